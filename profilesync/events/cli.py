"""``profilesync events ...`` and ``profilesync query ...``: thin shells over the library."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from profilesync.errors import ConfigurationError
from profilesync.events import importer
from profilesync.events import query as q
from profilesync.events import store as event_store

events_app = typer.Typer(
    help="Behavioural events: import files, manage projects and their API keys.",
    no_args_is_help=True,
)
projects_app = typer.Typer(
    help="Projects: each has an API key for POST /2/httpapi.", no_args_is_help=True
)
query_app = typer.Typer(
    help="Ask questions of events joined with current profiles.", no_args_is_help=True
)
events_app.add_typer(projects_app, name="projects")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", help="Project name (default: the only project).")
]


def _cli() -> Any:
    """The main CLI module (its store opener, consoles and printers), imported late."""
    from profilesync import cli

    return cli


# -- events import ----------------------------------------------------------------------


@events_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .parquet file of events.")],
    project: ProjectOpt = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv or parquet (default: by suffix).")
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Write every rejected row, with reasons, to this JSONL file."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Load events from a file: bad rows are skipped with reasons; the rest is stored at once."""
    cli = _cli()
    out = cli.out
    sink = rejects.open("wb") if rejects else None
    try:
        with cli._store() as store:
            if json_out or not out.is_terminal:
                result = importer.import_file(store, file, project=project, fmt=fmt, rejects=sink)
            else:
                result = _import_with_bar(store, file, project, fmt, sink, out)
    finally:
        if sink:
            sink.close()
    if json_out:
        cli._print_json(result.to_json())
        return
    out.print(
        f"[green]imported[/] {result.imported:,} events from {file.name} into project {result.project} "
        f"({result.rows:,} rows: {result.duplicates:,} duplicate insert_id, {result.rejected:,} rejected)"
    )
    if result.ignored_columns:
        out.print(f"  ignored columns: {', '.join(result.ignored_columns)}")
    for row in result.rejected_rows[:20]:
        where = f"{'line' if 'line' in row else 'row'} {row.get('line', row.get('row')) or '?'}"
        out.print(f"  rejected {where}: {'; '.join(row['reasons'])}", highlight=False)
    if result.rejected > 20:
        out.print(
            f"  ... {result.rejected - 20:,} more" + ("" if rejects else " (see --rejects FILE)")
        )


def _import_with_bar(
    store: Any, file: Path, project: str | None, fmt: str | None, sink: Any, out: Any
) -> importer.ImportResult:
    kind = importer.detect_format(file, fmt)
    amount = DownloadColumn() if kind != "parquet" else TextColumn("{task.completed:,} rows")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        amount,
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as bar:
        task = bar.add_task(f"import {file.name}", total=None)
        return importer.import_file(
            store,
            file,
            project=project,
            fmt=fmt,
            rejects=sink,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


@events_app.command("known")
def known_cmd(project: ProjectOpt = None, json_out: JsonOpt = False) -> None:
    """Known event types (with counts) and property names, by kind."""
    cli = _cli()
    with cli._store() as store:
        known = q.known(store, project)
    if json_out:
        cli._print_json(known)
        return
    cli._table(
        "event types",
        ["event type", "events", "last seen"],
        [[t["name"], f"{t['count']:,}", t["last_seen"]] for t in known["event_types"]],
    )
    for kind, props in known["properties"].items():
        cli.out.print(f"{kind}: {', '.join(p['name'] for p in props) or '-'}", highlight=False)


# -- projects ---------------------------------------------------------------------------


@projects_app.command("add")
def project_add(name: str, json_out: JsonOpt = False) -> None:
    """Create a project; its API key is shown once."""
    cli = _cli()
    with cli._store() as store:
        project, key = event_store.create_project(store, name)
    if json_out:
        cli._print_json({**project.to_json(), "api_key": key})
    else:
        cli.out.print(f"project [bold]{name}[/] created. API key (shown once): [bold]{key}[/]")


@projects_app.command("list")
def project_list(json_out: JsonOpt = False) -> None:
    """List projects (keys are never shown again; rotate one to get a new key)."""
    cli = _cli()
    with cli._store() as store:
        docs = [p.to_json() for p in event_store.list_projects(store)]
    if json_out:
        cli._print_json(docs)
    else:
        cli._table(
            "projects",
            ["name", "api key", "created"],
            [[d["name"], d["api_key_hint"], d["created_at"]] for d in docs],
        )


@projects_app.command("rotate-key")
def project_rotate(name: str, json_out: JsonOpt = False) -> None:
    """Replace a project's API key; senders using the old key are refused from now on."""
    cli = _cli()
    with cli._store() as store:
        project, key = event_store.rotate_key(store, name)
    if json_out:
        cli._print_json({**project.to_json(), "api_key": key})
    else:
        cli.out.print(f"new API key for {name} (shown once): [bold]{key}[/]")


@projects_app.command("delete")
def project_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask; delete the events too.")] = False,
) -> None:
    """Delete a project and every event it holds."""
    cli = _cli()
    if not yes and not typer.confirm(f"Delete project {name} and all its events?"):
        raise typer.Exit(1)
    with cli._store() as store:
        count = event_store.delete_project(store, name)
    cli.out.print(f"project {name} deleted with {count:,} events")


# -- query ------------------------------------------------------------------------------

_SYMBOLS = {"=": "is", "!=": "is not", "~": "contains", "!~": "does not contain"}
_FILTER = re.compile(r"^(?P<prop>.+?)\s*(?P<op>!=|>=|<=|!~|=|>|<|~)\s*(?P<values>.*)$")


def parse_filter(text: str, profile_names: set[str]) -> q.Filter:
    """``profile:Plan=pro,enterprise``, ``event:amount>10``, ``user:plan!=free``,
    ``event:path~pricing`` (contains), ``profile:Country is set``."""
    text = text.strip()
    for suffix, op in ((" is not set", "is not set"), (" is set", "is set")):
        if text.endswith(suffix):
            ref = q.PropertyRef.parse(text.removesuffix(suffix).strip(), profile_names)
            return q.Filter(kind=ref.kind, name=ref.name, op=op)  # type: ignore[arg-type]
    match = _FILTER.match(text)
    if not match:
        raise ConfigurationError(
            f"--where {text!r} is not understood: write KIND:NAME=VALUE[,VALUE] "
            "(operators = != > >= < <= ~ !~, or 'KIND:NAME is set')"
        )
    ref = q.PropertyRef.parse(match["prop"].strip(), profile_names)
    values = [v.strip() for v in match["values"].split(",") if v.strip()]
    op = _SYMBOLS.get(match["op"], match["op"])
    return q.Filter(kind=ref.kind, name=ref.name, op=op, values=values)  # type: ignore[arg-type,arg-type]


@query_app.command("segmentation")
def segmentation_cmd(
    event: Annotated[list[str], typer.Option("--event", "-e", help="Event type (repeatable).")],
    metric: Annotated[
        str, typer.Option("--metric", help="totals, uniques, sum or avg (sum/avg need --property).")
    ] = "totals",
    prop: Annotated[
        str | None, typer.Option("--property", help="The event property summed or averaged.")
    ] = None,
    interval: Annotated[str, typer.Option("--interval", help="hour, day, week or month.")] = "day",
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", "-w", help="Filter, e.g. 'profile:Plan=pro,enterprise' (repeatable)."
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", "-g", help="profile:NAME, user:NAME, event:NAME or field:NAME."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Groups shown; the rest become 'other'.")
    ] = 10,
    project: Annotated[
        str | None, typer.Option("--project", help="Project (default: all).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A metric of event types over time, filtered and grouped by (current) profile properties."""
    cli = _cli()
    with cli._store() as store:
        names = {name for _, cols in store.profile_tables() for name in cols}
        try:
            query = q.SegmentationQuery(
                events=event,
                metric=metric,  # type: ignore[arg-type]
                property=q.PropertyRef.parse(prop, names) if prop else None,
                interval=interval,  # type: ignore[arg-type]
                start=start,  # type: ignore[arg-type]
                end=end,  # type: ignore[arg-type]
                filters=[parse_filter(w, names) for w in where or []],
                group_by=q.PropertyRef.parse(group_by, names) if group_by else None,
                limit=limit,
                project=project,
            )
        except ValidationError as exc:
            raise ConfigurationError(_validation_message(exc)) from exc
        result = q.segmentation(store, query)
    if json_out:
        cli._print_json(result)
        return
    _print_result(cli, result)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _print_result(cli: Any, result: dict[str, Any]) -> None:
    series = result["series"]
    hourly = result["interval"] == "hour"
    columns = [result["interval"]] + [s["label"] for s in series]
    rows = [
        [b[:16].replace("T", " ") if hourly else b[:10]] + [_fmt(s["values"][i]) for s in series]
        for i, b in enumerate(result["buckets"])
    ]
    rows.append(["total"] + [_fmt(s["total"]) for s in series])
    group = result["query"]["group_by"]
    title = f"{result['metric']} of {', '.join(result['query']['events'])}" + (
        f" by {group['kind']}:{group['name']}" if group else ""
    )
    cli._table(title, columns, rows)
    if not series:
        cli.out.print("no events match")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


@query_app.command("user")
def user_cmd(
    user_id: str,
    limit: Annotated[int, typer.Option("--limit", help="How many recent events.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """A user's current profile and their latest events."""
    cli = _cli()
    with cli._store() as store:
        found = q.user_lookup(store, user_id, limit)
    if json_out:
        cli._print_json(found)
        return
    profile = found["profile"] or {"properties": {}, "details": {}}
    cli._table(
        f"profile {user_id}",
        ["property", "value", "source", "synced"],
        [
            [k, json.dumps(v), profile["details"][k]["source"], profile["details"][k]["synced_at"]]
            for k, v in profile["properties"].items()
        ],
    )
    cli._table(
        f"latest events ({found['event_count']:,} in all)",
        ["time", "event", "event properties", "user properties then"],
        [
            [
                e["time"],
                e["event_type"],
                json.dumps(e["event_properties"]),
                json.dumps(e["user_properties"]),
            ]
            for e in found["events"]
        ],
    )
