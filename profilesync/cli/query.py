"""``profilesync query ...``: segmentation and user lookup over events and current profiles."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from profilesync.app import events
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
    ``event:path~pricing`` (contains), ``profile:Country is set``."""
    text = text.strip()
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
            "--where", "-w", help="Filter, e.g. 'profile:Plan=pro,enterprise' (repeatable)."
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
