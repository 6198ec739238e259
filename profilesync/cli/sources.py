"""The ``source`` command group: a table or query mapped to profile properties."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from profilesync.app import sources
from profilesync.cli._shared import JsonOpt, err, out, print_check, print_json, store, table
from profilesync.errors import ConfigurationError
from profilesync.mapping import parse_property
from profilesync.model import check_name, format_frequency, parse_frequency

source_app = typer.Typer(
    help="Sources: a table or query mapped to profile properties.", no_args_is_help=True
)


@source_app.command("add")
def source_add(
    name: str,
    connection: Annotated[str, typer.Option("--connection", help="Connection name.")],
    table_: Annotated[
        str | None, typer.Option("--table", help="Table, named schema.table.")
    ] = None,
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
    ] = sources.DEFAULT_FREQUENCY,
    strategy: Annotated[
        str, typer.Option("--strategy", help="cdc (change data capture) or diff (snapshot diff).")
    ] = "cdc",
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Save even if Test mapping fails.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a source: a table (or a profile SELECT) mapped to profile properties."""
    name = check_name(name, "source")
    if strategy not in sources.STRATEGIES:
        raise ConfigurationError(f"--strategy {strategy!r}: choose cdc or diff")
    spec = sources.SourceSpec(
        connection=connection,
        name=name,
        table=table_,
        query=query,
        user_id=user_id,
        properties=[parse_property(p) for p in prop or []],
        strategy=strategy,
        frequency_seconds=parse_frequency(frequency),
    )
    with store() as opened:
        try:
            saved, checks = sources.add_source(opened, spec, no_check=no_check)
        except sources.ChecksFailedError as exc:
            raise ConfigurationError(
                "Test mapping failed, the source was not saved (--no-check saves it anyway):\n  - "
                + "\n  - ".join(exc.failures)
            ) from exc
        doc = sources.source_doc(opened, saved)
    if json_out:
        print_json(doc)
        return
    for check in checks:
        print_check(check.to_json())
    mapping = saved.mapping
    out.print(
        f"source [bold]{saved.name}[/] added: {mapping.table} -> {', '.join(mapping.property_names) or 'no properties'}; "
        f"every {format_frequency(saved.frequency_seconds)} by {strategy}. Run `profilesync sync {saved.name}`."
    )


@source_app.command("list")
def source_list(json_out: JsonOpt = False) -> None:
    """List sources with their checkpoint and last run."""
    with store() as opened:
        docs = [sources.source_doc(opened, s) for s in sources.list_sources(opened)]
    if json_out:
        print_json(docs)
        return
    table(
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
    with store() as opened:
        warning = sources.delete_source(opened, name, force=force, force_hint="add --force")
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    out.print(f"source {name} deleted with its properties")


@source_app.command("test")
def source_test(name: str, json_out: JsonOpt = False) -> None:
    """Test mapping: change tracking, retention, a preview and the rows that would be rejected."""
    with store() as opened:
        report = sources.test_source(opened, name)
    if json_out:
        print_json(report)
    else:
        for check in report["checks"]:
            print_check(check)
        if report["preview"]:
            cols = list(report["preview"][0])
            table(
                f"preview ({report['sampled_rows']} rows read)",
                cols,
                [[r.get(c) for c in cols] for r in report["preview"]],
            )
        if report["rejected"]:
            table(
                f"{report['rejected']} row(s) would be rejected",
                ["reason", "row"],
                [[r["reason"], json.dumps(r["row"], default=str)] for r in report["rejected_rows"]],
            )
        out.print("[green]mapping OK[/]" if report["ok"] else "[red]mapping has failures[/]")
    if not report["ok"]:
        raise typer.Exit(1)
