"""The ``source`` command group: a table or query mapped to profile properties."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from profilesync.app import edit, sources
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


@source_app.command("show")
def source_show(name: str, json_out: JsonOpt = False) -> None:
    """One source: mapping, strategy, frequency, checkpoint, last run and any pending resync."""
    with store() as opened:
        doc = sources.source_doc(opened, sources.get_source(opened, name))
    if json_out:
        print_json(doc)
        return
    what = f"query: {doc['query']}" if doc["query"] else f"table: {doc['table']}"
    out.print(
        f"[bold]{doc['name']}[/] ({doc['connection']}, {doc['kind']}) {what}", highlight=False
    )
    out.print(f"user_id: {doc['user_id']}", highlight=False)
    for prop in doc["properties"]:
        out.print(f"  {prop['name']} <- {prop['expression']}", highlight=False)
    out.print(
        f"strategy {doc['strategy']}, every {doc['frequency']}"
        + (", paused" if doc["paused"] else ""),
        highlight=False,
    )
    if doc["resync_pending"]:
        out.print(
            "[yellow]resync pending[/]: the next sync diffs the table against the store ("
            + "; ".join(doc["resync_pending"]["reasons"])
            + ")",
            highlight=False,
        )


@source_app.command("edit")
def source_edit(
    name: str,
    add: Annotated[
        list[str] | None,
        typer.Option("--add-property", help="COLUMN[=Display Name] to add (repeatable)."),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option("--remove-property", help="Display name of a property to drop (repeatable)."),
    ] = None,
    rename: Annotated[
        list[str] | None, typer.Option("--rename", help="OLD=NEW display name (repeatable).")
    ] = None,
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="The column holding the user id.")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="The new profile query.")] = None,
    frequency: Annotated[
        str | None, typer.Option("--frequency", help="How often to sync: 30m, 1h, 12h, 1d.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="cdc (change data capture) or diff.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; save nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Save without asking.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Change a source's mapping, query, frequency or strategy; says first what it does to the profiles."""
    changes = _changes(add, remove, rename, user_id, query, frequency, strategy)
    with store() as opened:
        plan = edit.plan_edit(opened, name, changes)
        if not (json_out and not dry_run):
            _print_plan(plan, json_out)
        if dry_run or not plan.changed:
            if plan.failures:
                raise typer.Exit(1)
            return
        if plan.failures:
            raise ConfigurationError(
                "Test mapping failed, the source was not changed:\n  - "
                + "\n  - ".join(plan.failures)
            )
        if not yes:
            _confirm(name)
        saved, plan, warning = edit.apply_edit(opened, name, changes)
        doc = sources.source_doc(opened, saved)
    _print_saved(plan, doc, warning, json_out)


def _changes(
    add: list[str] | None,
    remove: list[str] | None,
    rename: list[str] | None,
    user_id: str | None,
    query: str | None,
    frequency: str | None,
    strategy: str | None,
) -> edit.SourceChanges:
    """The options of ``source edit`` as one change; refused when they change nothing."""
    changes = edit.SourceChanges(
        add=[parse_property(p) for p in add or []],
        remove=list(remove or []),
        rename=[_rename(r) for r in rename or []],
        user_id=user_id,
        query=query,
        frequency_seconds=parse_frequency(frequency) if frequency else None,
        strategy=strategy,
    )
    if changes.empty():
        raise ConfigurationError(
            "nothing to change: give --add-property, --remove-property, --rename, --user-id, "
            "--query, --frequency or --strategy"
        )
    return changes


def _print_saved(
    plan: edit.EditPlan, doc: dict[str, Any], warning: str | None, json_out: bool
) -> None:
    name = doc["name"]
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if json_out:
        print_json({"plan": plan.to_json(), "source": doc})
        return
    out.print(f"source [bold]{name}[/] saved.", highlight=False)
    if doc["resync_pending"]:
        out.print(
            f"Its next sync is a resync (`profilesync sync {name}` runs it now).", highlight=False
        )


def _rename(spec: str) -> tuple[str, str]:
    old, sep, new = spec.partition("=")
    if not sep or not old.strip() or not new.strip():
        raise ConfigurationError(f"--rename {spec!r}: write OLD=NEW (display names)")
    return old.strip(), new.strip()


def _print_plan(plan: edit.EditPlan, json_out: bool) -> None:
    if json_out:
        print_json(plan.to_json())
        return
    out.print(f"Changes to source [bold]{plan.before.name}[/]:", highlight=False)
    for line in plan.lines:
        out.print(f"  - {line}", highlight=False, soft_wrap=True)
    for check in plan.checks:
        if check["level"] != "pass":
            print_check(check)


def _confirm(name: str) -> None:
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"source edit {name} needs a confirmation and there is no terminal to ask: "
            "add --yes to save, or --dry-run to only print the changes"
        )
    if not typer.confirm("Save these changes?", default=False):
        raise typer.Exit(1)
