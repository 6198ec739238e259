"""``profilesync events ...``: import files of events, known types, projects and their keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from profilesync.app import Store, events, projects
from profilesync.cli._shared import JsonOpt, out, print_json, store, table

events_app = typer.Typer(
    help="Behavioural events: import files, manage projects and their API keys.",
    no_args_is_help=True,
)
projects_app = typer.Typer(
    help="Projects: each has an API key for POST /2/httpapi.", no_args_is_help=True
)
events_app.add_typer(projects_app, name="projects")

ProjectOpt = Annotated[
    str | None, typer.Option("--project", help="Project name (default: the only project).")
]


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
    sink = rejects.open("wb") if rejects else None
    try:
        with store() as opened:
            if json_out or not out.is_terminal:
                result = events.import_file(opened, file, project=project, fmt=fmt, rejects=sink)
            else:
                result = _import_with_bar(opened, file, project, fmt, sink)
    finally:
        if sink:
            sink.close()
    if json_out:
        print_json(result.to_json())
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
    opened: Store, file: Path, project: str | None, fmt: str | None, sink: Any
) -> events.ImportResult:
    kind = events.detect_format(file, fmt)
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
        return events.import_file(
            opened,
            file,
            project=project,
            fmt=fmt,
            rejects=sink,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


@events_app.command("known")
def known_cmd(project: ProjectOpt = None, json_out: JsonOpt = False) -> None:
    """Known event types (with counts) and property names, by kind."""
    with store() as opened:
        known = events.known(opened, project)
    if json_out:
        print_json(known)
        return
    table(
        "event types",
        ["event type", "events", "last seen"],
        [[t["name"], f"{t['count']:,}", t["last_seen"]] for t in known["event_types"]],
    )
    for kind, props in known["properties"].items():
        out.print(f"{kind}: {', '.join(p['name'] for p in props) or '-'}", highlight=False)


# -- projects ---------------------------------------------------------------------------


@projects_app.command("add")
def project_add(name: str, json_out: JsonOpt = False) -> None:
    """Create a project; its API key is shown once."""
    with store() as opened:
        project, key = projects.create_project(opened, name)
    if json_out:
        print_json({**project.to_json(), "api_key": key})
    else:
        out.print(f"project [bold]{name}[/] created. API key (shown once): [bold]{key}[/]")


@projects_app.command("list")
def project_list(json_out: JsonOpt = False) -> None:
    """List projects (keys are never shown again; rotate one to get a new key)."""
    with store() as opened:
        docs = [p.to_json() for p in projects.list_projects(opened)]
    if json_out:
        print_json(docs)
    else:
        table(
            "projects",
            ["name", "api key", "created"],
            [[d["name"], d["api_key_hint"], d["created_at"]] for d in docs],
        )


@projects_app.command("rotate-key")
def project_rotate(name: str, json_out: JsonOpt = False) -> None:
    """Replace a project's API key; senders using the old key are refused from now on."""
    with store() as opened:
        project, key = projects.rotate_key(opened, name)
    if json_out:
        print_json({**project.to_json(), "api_key": key})
    else:
        out.print(f"new API key for {name} (shown once): [bold]{key}[/]")


@projects_app.command("delete")
def project_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask; delete the events too.")] = False,
) -> None:
    """Delete a project and every event it holds."""
    if not yes and not typer.confirm(f"Delete project {name} and all its events?"):
        raise typer.Exit(1)
    with store() as opened:
        count = projects.delete_project(opened, name)
    out.print(f"project {name} deleted with {count:,} events")
