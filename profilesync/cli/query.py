"""``profilesync query ...``: segmentation and user lookup over events and current profiles."""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from profilesync.app import analyses, events
from profilesync.app.events import Filter, PropertyRef, SegmentationQuery
from profilesync.cli._shared import JsonOpt, out, print_json, store, table
from profilesync.errors import ConfigurationError

query_app = typer.Typer(
    help="Ask questions of events joined with current profiles.", no_args_is_help=True
)

_SYMBOLS = {"=": "is", "!=": "is not", "~": "contains", "!~": "does not contain"}
_FILTER = re.compile(r"^(?P<prop>.+?)\s*(?P<op>!=|>=|<=|!~|=|>|<|~)\s*(?P<values>.*)$")


def parse_filter(text: str, profile_names: set[str]) -> Filter:
    """``profile:Plan=pro,enterprise``, ``event:amount>10``, ``user:plan!=free``,
    ``event:path~pricing`` (contains), ``profile:Country is set``, ``cohort:Whales``
    (a member of the saved cohort) and ``!cohort:Whales`` (not a member)."""
    text = text.strip()
    if text.startswith(("cohort:", "!cohort:")):
        name = text.split(":", 1)[1].strip()
        return Filter(kind="cohort", name=name, op="is not" if text[0] == "!" else "is")
    for suffix, op in ((" is not set", "is not set"), (" is set", "is set")):
        if text.endswith(suffix):
            ref = PropertyRef.parse(text.removesuffix(suffix).strip(), profile_names)
            return Filter(kind=ref.kind, name=ref.name, op=op)  # type: ignore[arg-type]
    match = _FILTER.match(text)
    if not match:
        raise ConfigurationError(
            f"--where {text!r} is not understood: write KIND:NAME=VALUE[,VALUE] "
            "(operators = != > >= < <= ~ !~, or 'KIND:NAME is set')"
        )
    ref = PropertyRef.parse(match["prop"].strip(), profile_names)
    values = [v.strip() for v in match["values"].split(",") if v.strip()]
    op = _SYMBOLS.get(match["op"], match["op"])
    return Filter(kind=ref.kind, name=ref.name, op=op, values=values)  # type: ignore[arg-type,arg-type]


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
            "--where",
            "-w",
            help="Filter, e.g. 'profile:Plan=pro,enterprise' or 'cohort:Whales' (repeatable).",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            "-g",
            help="profile:NAME, user:NAME, event:NAME, field:NAME or group:TYPE.",
        ),
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
    with store() as opened:
        names = events.profile_names(opened)
        try:
            query = SegmentationQuery(
                events=event,
                metric=metric,  # type: ignore[arg-type]
                property=PropertyRef.parse(prop, names) if prop else None,
                interval=interval,  # type: ignore[arg-type]
                start=start,  # type: ignore[arg-type]
                end=end,  # type: ignore[arg-type]
                filters=[parse_filter(w, names) for w in where or []],
                group_by=PropertyRef.parse(group_by, names) if group_by else None,
                limit=limit,
                project=project,
            )
        except ValidationError as exc:
            raise ConfigurationError(_validation_message(exc)) from exc
        result = events.segmentation(opened, query)
    if json_out:
        print_json(result)
        return
    _print_result(result)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _print_result(result: dict[str, Any]) -> None:
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
    table(title, columns, rows)
    if not series:
        out.print("no events match")


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
    with store() as opened:
        found = events.user_lookup(opened, user_id, limit)
    if json_out:
        print_json(found)
        return
    profile = found["profile"] or {"properties": {}, "details": {}}
    table(
        f"profile {user_id}",
        ["property", "value", "source", "synced"],
        [
            [k, json.dumps(v), profile["details"][k]["source"], profile["details"][k]["synced_at"]]
            for k, v in profile["properties"].items()
        ],
    )
    table(
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


# -- funnels, retention, cohorts ----------------------------------------------------------

WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="Filter, e.g. 'profile:Plan=pro', 'cohort:Whales', '!cohort:Whales' (repeatable).",
    ),
]
GroupOpt = Annotated[
    str | None,
    typer.Option(
        "--group-by", "-g", help="profile:NAME (current value) or user:NAME (at the start)."
    ),
]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Project (default: all).")]
LimitOpt = Annotated[int, typer.Option("--limit", help="Groups shown; the rest become 'other'.")]


def where_filters(texts: list[str] | None, names: set[str]) -> list[Filter]:
    return [parse_filter(text, names) for text in texts or []]


def _build(model: type[Any], **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise ConfigurationError(_validation_message(exc)) from exc


@query_app.command("funnel")
def funnel_cmd(
    event: Annotated[
        list[str], typer.Option("--event", "-e", help="A step's event type, in order (repeat).")
    ],
    window: Annotated[
        str, typer.Option("--window", help="Conversion window from step 1: 30m, 1h, 7d, 2w.")
    ] = "7d",
    order: Annotated[
        str, typer.Option("--order", help="this (others in between allowed), strict or any.")
    ] = "this",
    where: WhereOpt = None,
    group_by: GroupOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    limit: LimitOpt = 10,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Users reaching each step, in order, within a window of their first step."""
    with store() as opened:
        names = events.profile_names(opened)
        query = _build(
            analyses.FunnelQuery, steps=event, window=window, order=order,
            where=where_filters(where, names), start=start, end=end, limit=limit, project=project,
            group_by=PropertyRef.parse(group_by, names) if group_by else None,
        )  # fmt: skip
        result = analyses.funnel(opened, query)
    if json_out:
        print_json(result)
        return
    _print_steps(f"funnel within {result['window']} ({result['order']} order)", result["steps"])
    for group in result.get("groups", []):
        _print_steps(group["label"], group["steps"])


def _print_steps(title: str, steps: list[dict[str, Any]]) -> None:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def took(seconds: float | None) -> str:
        return "-" if seconds is None else str(timedelta(seconds=round(seconds)))

    table(
        title,
        ["step", "users", "conversion", "from previous", "drop-off", "median time"],
        [
            [f"{i}. {s['event_type']}", f"{s['users']:,}", pct(s["conversion"]),
             pct(s["step_conversion"]), f"{s['drop_off']:,}", took(s["median_seconds_to_convert"])]
            for i, s in enumerate(steps, 1)
        ],
    )  # fmt: skip


@query_app.command("retention")
def retention_cmd(
    start_event: Annotated[
        str, typer.Option("--start", "--start-event", help="The event that starts a user.")
    ],
    return_event: Annotated[
        str,
        typer.Option("--return", "--return-event", help="The event that counts as coming back."),
    ],
    interval: Annotated[str, typer.Option("--interval", help="day or week.")] = "day",
    buckets: Annotated[
        int, typer.Option("--buckets", help="Offsets shown after the start: 0..N.")
    ] = 7,
    mode: Annotated[
        str, typer.Option("--mode", help="on (in that interval) or on-or-after.")
    ] = "on",
    where: WhereOpt = None,
    group_by: GroupOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    limit: LimitOpt = 10,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Users by the day (or week) of their first start event, and when they came back."""
    with store() as opened:
        names = events.profile_names(opened)
        query = _build(
            analyses.RetentionQuery, start_event=start_event, return_event=return_event,
            interval=interval, buckets=buckets, mode=mode, where=where_filters(where, names),
            start=start, end=end, limit=limit, project=project,
            group_by=PropertyRef.parse(group_by, names) if group_by else None,
        )  # fmt: skip
        result = analyses.retention(opened, query)
    if json_out:
        print_json(result)
        return
    _print_cohorts(
        f"retention ({result['mode'].replace('_', ' ')}) by {result['interval']}", result
    )
    for group in result.get("groups", []):
        _print_cohorts(group["label"], group)


def _print_cohorts(title: str, result: dict[str, Any]) -> None:
    cohorts = [c for c in result["cohorts"] if c["users"]]
    width = len(result["cohorts"][0]["returned"]) if result["cohorts"] else 0
    table(
        title,
        ["start", "users"] + [str(k) for k in range(width)],
        [[c["start"], f"{c['users']:,}"] + [f"{r:.0%}" for r in c["rates"]] for c in cohorts],
    )
    if not cohorts:
        out.print("no user started in the range")


cohort_app = typer.Typer(
    help="Saved cohorts: users by profile properties and behaviour.", no_args_is_help=True
)
query_app.add_typer(cohort_app, name="cohort")


@cohort_app.command("add")
def cohort_add_cmd(
    name: str,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            help="Profile condition, e.g. 'Plan=enterprise' or 'profile:Score>0.8' (repeat).",
        ),
    ] = None,
    did: Annotated[
        list[str] | None,
        typer.Option(
            "--did",
            help="'EVENT[>=N] [in Dd]': did it at least N times in the last D days (default 1, 30d).",
        ),
    ] = None,
    did_not: Annotated[
        list[str] | None,
        typer.Option("--did-not", help="'EVENT[>=N] [in Dd]': fewer than N times (never, for 1)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the definition of an existing cohort.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Save a cohort: every condition must hold (profile values now, events in the last days)."""
    with store() as opened:
        names = events.profile_names(opened)
        try:
            behaviour = [analyses.parse_behaviour(t) for t in did or []]
            behaviour += [analyses.parse_behaviour(t, did=False) for t in did_not or []]
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        definition = _build(
            analyses.CohortDefinition,
            where=[
                parse_filter(w if ":" in w.split("=")[0] else f"profile:{w}", names)
                for w in where or []
            ],
            behaviour=behaviour,
        )
        save = analyses.cohort_update if replace else analyses.cohort_add
        saved = save(opened, name, definition)
        shown = analyses.cohort_show(opened, saved["name"], sample=0)
    if json_out:
        print_json(shown)
        return
    out.print(f"cohort {shown['name']!r} saved: {shown['size']:,} users now")


@cohort_app.command("list")
def cohort_list_cmd(json_out: JsonOpt = False) -> None:
    """Saved cohorts and their conditions."""
    with store() as opened:
        cohorts = analyses.cohort_list(opened)
    if json_out:
        print_json(cohorts)
        return
    table(
        "cohorts",
        ["name", "conditions", "updated"],
        [[c["name"], _conditions(c["definition"]), c["updated_at"]] for c in cohorts],
    )


def _conditions(definition: dict[str, Any]) -> str:
    cohort = analyses.CohortDefinition.model_validate(definition)
    parts = [f"{f.name} {f.op} {','.join(str(v) for v in f.values)}".strip() for f in cohort.where]
    return "; ".join(parts + [b.label() for b in cohort.behaviour])


@cohort_app.command("show")
def cohort_show_cmd(
    name: str,
    sample: Annotated[int, typer.Option("--sample", help="Member ids shown.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """A cohort's conditions, its size now and some members."""
    with store() as opened:
        shown = analyses.cohort_show(opened, name, sample)
    if json_out:
        print_json(shown)
        return
    out.print(f"cohort {shown['name']!r}: {_conditions(shown['definition'])}")
    out.print(
        f"{shown['size']:,} users now"
        + (f"; first: {', '.join(shown['sample'])}" if shown["sample"] else "")
    )


@cohort_app.command("export")
def cohort_export_cmd(
    name: str,
    fmt: Annotated[str, typer.Option("--format", help="csv (a user_id column) or jsonl.")] = "csv",
) -> None:
    """Every member's user id now, on stdout."""
    if fmt not in ("csv", "jsonl"):
        raise ConfigurationError(f"--format {fmt!r} is not known: use csv or jsonl")
    with store() as opened:
        ids = analyses.cohort_export(opened, name)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(["user_id"])
        for user_id in ids:
            if fmt == "csv":
                writer.writerow([user_id])
            else:
                sys.stdout.write(json.dumps({"user_id": user_id}) + "\n")


@cohort_app.command("delete")
def cohort_delete_cmd(name: str) -> None:
    """Delete a saved cohort (filters naming it then fail)."""
    with store() as opened:
        analyses.cohort_delete(opened, name)
    out.print(f"cohort {name!r} deleted")
