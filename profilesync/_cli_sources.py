"""The ``source`` command group of the CLI (see :mod:`profilesync.cli`).

Kept apart so the main CLI module stays readable; it shares that module's store and
output helpers, imported when a command runs (``cli`` imports this module to register it).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from profilesync.errors import ConfigurationError, ProfilesyncError
from profilesync.mapping import parse_property
from profilesync.model import Source, check_name, format_frequency, parse_frequency
from profilesync.sources import open_source, opened
from profilesync.sync import engine

source_app = typer.Typer(
    help="Sources: a table or query mapped to profile properties.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@source_app.command("add")
def source_add(
    name: str,
    connection: Annotated[str, typer.Option("--connection", help="Connection name.")],
    table: Annotated[str | None, typer.Option("--table", help="Table, named schema.table.")] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", help='SELECT col AS "user_id", col AS "Name" FROM t [WHERE ...].'),
    ] = None,
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="Column holding the user id (with --table).")
    ] = None,
    prop: Annotated[
        list[str] | None, typer.Option("--property", help="COLUMN[=Display Name] (repeatable).")
    ] = None,
    frequency: Annotated[
        str, typer.Option("--frequency", help="How often to sync: 30m, 1h, 12h, 1d.")
    ] = "12h",
    strategy: Annotated[
        str, typer.Option("--strategy", help="cdc (change data capture) or diff (snapshot diff).")
    ] = "cdc",
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Save even if Test mapping fails.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a source: a table (or a profile SELECT) mapped to profile properties."""
    from profilesync import cli

    name = check_name(name, "source")
    if strategy not in ("cdc", "diff"):
        raise ConfigurationError(f"--strategy {strategy!r}: choose cdc or diff")
    seconds = parse_frequency(frequency)
    with cli._store() as store, opened(store.get_connection(connection), name) as warehouse:
        mapping = engine.resolve_mapping(
            warehouse,
            table=table,
            query=query,
            user_id=user_id,
            properties=[parse_property(p) for p in prop or []],
            strategy=strategy,
        )
        source = Source(
            name=name,
            connection=connection,
            mapping=mapping,
            strategy=strategy,  # type: ignore[arg-type]
            frequency_seconds=seconds,
        )
        store.check_property_names(name, mapping)
        checks = [] if no_check else engine.source_checks(warehouse, source)
        if failed := engine.failures(checks):
            raise ConfigurationError(
                "Test mapping failed, the source was not saved (--no-check saves it anyway):\n  - "
                + "\n  - ".join(failed)
            )
        saved = store.add_source(source)
    if json_out:
        cli._print_json(_source_doc(saved))
    else:
        for check in checks:
            _print_check(check.to_json())
        cli.out.print(
            f"source [bold]{name}[/] added: {mapping.table} -> {', '.join(mapping.property_names) or 'no properties'}; "
            f"every {format_frequency(seconds)} by {strategy}. Run `profilesync sync {name}`."
        )


def _source_doc(source: Source) -> dict[str, Any]:
    return {
        "name": source.name,
        "connection": source.connection,
        "table": source.mapping.table,
        "query": source.mapping.query,
        "user_id": source.mapping.user_id,
        "properties": [
            {"name": p.name, "expression": p.expression} for p in source.mapping.properties
        ],
        "strategy": source.strategy,
        "frequency": format_frequency(source.frequency_seconds),
        "paused": source.paused,
        "checkpoint": source.checkpoint.to_json() if source.checkpoint else None,
    }


@source_app.command("list")
def source_list(json_out: JsonOpt = False) -> None:
    """List sources with their checkpoint and last run."""
    from profilesync import cli

    with cli._store() as store:
        docs = []
        for source in store.list_sources():
            doc = _source_doc(source)
            runs = store.runs(source.name, limit=1)
            doc["last_run"] = runs[0] if runs else None
            docs.append(doc)
    if json_out:
        cli._print_json(docs)
        return
    cli._table(
        "sources",
        [
            "name",
            "connection",
            "table",
            "properties",
            "strategy",
            "frequency",
            "checkpoint",
            "last run",
        ],
        [
            [
                d["name"],
                d["connection"],
                d["table"],
                ", ".join(p["name"] for p in d["properties"]),
                d["strategy"],
                d["frequency"],
                d["checkpoint"]["position"] if d["checkpoint"] else "-",
                f"{d['last_run']['status']} {d['last_run']['finished_at']}"
                if d["last_run"]
                else "never",
            ]
            for d in docs
        ],
    )


@source_app.command("delete")
def source_delete(
    name: str,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even if the warehouse cannot be reached to free what the source holds there "
            "(a Postgres replication slot then stays on the server: drop it by hand).",
        ),
    ] = False,
) -> None:
    """Delete a source and every property it gave to profiles (and its Postgres slot)."""
    from profilesync import cli

    with cli._store() as store:
        source = store.get_source(name)
        warehouse = open_source(store.get_connection(source.connection), name)
        try:
            warehouse.release(source.mapping)
        except ProfilesyncError as exc:
            if not force:
                raise ProfilesyncError(
                    f"{exc} — the source was not deleted; fix the connection, or add --force "
                    "to delete it anyway and free the warehouse side by hand"
                ) from exc
            cli.err.print(f"[yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
        finally:
            warehouse.close()
        store.delete_source(name)
    cli.out.print(f"source {name} deleted with its properties")


@source_app.command("test")
def source_test(name: str, json_out: JsonOpt = False) -> None:
    """Test mapping: change tracking, retention, a preview and the rows that would be rejected."""
    from profilesync import cli

    with cli._store() as store:
        report = engine.test_mapping(store, store.get_source(name))
    if json_out:
        cli._print_json(report)
    else:
        for check in report["checks"]:
            _print_check(check)
        if report["preview"]:
            cols = list(report["preview"][0])
            cli._table(
                f"preview ({report['sampled_rows']} rows read)",
                cols,
                [[r.get(c) for c in cols] for r in report["preview"]],
            )
        if report["rejected"]:
            cli._table(
                f"{report['rejected']} row(s) would be rejected",
                ["reason", "row"],
                [[r["reason"], json.dumps(r["row"], default=str)] for r in report["rejected_rows"]],
            )
        cli.out.print("[green]mapping OK[/]" if report["ok"] else "[red]mapping has failures[/]")
    if not report["ok"]:
        raise typer.Exit(1)


def _print_check(check: dict[str, Any]) -> None:
    from profilesync import cli

    style = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue"}[check["level"]]
    cli.out.print(f"[{style}]{check['level']:>4}[/] {check['name']}: {check['message']}")
    if check.get("fix_sql"):
        cli.out.print(f"      run: [bold]{check['fix_sql']}[/]")
