"""The demo's funnel (page view -> feature use -> purchase) and its retention by a synced
property, printed as compact tables with the command that asks the same."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from profilesync.app import Store, analyses
from profilesync.demo.common import cli_command

STEPS = ["Page Viewed", "Feature Used", "Purchase Completed"]
WINDOW = "3d"
#: retention of the users who viewed a page in one week, by their current Seniority
GROUP = "Seniority"
WEEKS = 3


def print_analyses(store: Store, console: Console, today: date | None = None) -> None:
    """The funnel over the last 30 days, then retention by :data:`GROUP`."""
    _funnel(store, console)
    _retention(store, console, today or datetime.now(UTC).date())


def _funnel(store: Store, console: Console) -> None:
    query = analyses.FunnelQuery.model_validate({"steps": STEPS, "window": WINDOW})
    result = analyses.funnel(store, query)
    table = Table(
        "step", "users", "conversion", "from previous", "median time",
        title=f"Funnel, last 30 days: each step within {WINDOW} of the first page view",
        title_justify="left",
    )  # fmt: skip
    for i, step in enumerate(result["steps"], 1):
        table.add_row(
            f"{i}. {step['event_type']}",
            str(step["users"]),
            _pct(step["conversion"]),
            _pct(step["step_conversion"]),
            _took(step["median_seconds_to_convert"]),
        )
    console.print(table)
    steps = " ".join(f"-e '{s}'" for s in STEPS)
    console.print(
        f"Try: [bold]{cli_command()} --home {store.home} query funnel {steps} --window {WINDOW}[/]"
    )


def _retention(store: Store, console: Console, today: date) -> None:
    """One weekly cohort, four weeks back, so that every week shown is over."""
    monday = today - timedelta(days=today.weekday() + 7 * (WEEKS + 1))
    sunday = monday + timedelta(days=6)
    query = analyses.RetentionQuery.model_validate(
        {
            "start_event": "Page Viewed",
            "return_event": "Purchase Completed",
            "interval": "week",
            "buckets": WEEKS,
            "start": monday,
            "end": sunday,
            "group_by": {"kind": "profile", "name": GROUP},
        }
    )
    result = analyses.retention(store, query)
    table = Table(
        f"{GROUP} (now)",
        "users",
        *(f"week {k}" for k in range(WEEKS + 1)),
        title=f"Retention: who viewed a page in the week of {monday}, share purchasing each week",
        title_justify="left",
    )
    for group in [{"label": "all users", **result}, *result["groups"]]:
        cohort: dict[str, Any] = group["cohorts"][0]
        table.add_row(group["label"], str(cohort["users"]), *map(_pct, cohort["rates"]))
    console.print(table)
    console.print(
        f"Try: [bold]{cli_command()} --home {store.home} query retention --start 'Page Viewed' "
        f"--return 'Purchase Completed' --interval week --buckets {WEEKS} --from {monday} "
        f"--to {sunday} -g profile:{GROUP}[/]"
    )


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours = round(seconds / 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"
