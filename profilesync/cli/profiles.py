"""The ``profile`` command group, and ``usage``."""

from __future__ import annotations

import json
import sys

import typer

from profilesync.app import profiles, settings
from profilesync.cli._shared import JsonOpt, out, print_json, store, table

profile_app = typer.Typer(help="Look up and export profiles.", no_args_is_help=True)


@profile_app.command("get")
def profile_get(user_id: str, json_out: JsonOpt = False) -> None:
    """Show one profile."""
    with store() as opened:
        profile = profiles.get_profile(opened, user_id)
    if json_out:
        print_json(profile)
    else:
        table(
            f"profile {user_id}",
            ["property", "value"],
            [[k, json.dumps(v)] for k, v in profile["properties"].items()],
        )


@profile_app.command("export")
def profile_export() -> None:
    """Every profile, one JSON object per line."""
    with store() as opened:
        for profile in profiles.export_profiles(opened):
            sys.stdout.write(json.dumps(profile) + "\n")


def usage_cmd(json_out: JsonOpt = False) -> None:
    """Operations this month per source, against the plan's limit."""
    with store() as opened:
        usage = settings.usage(opened)
    if json_out:
        print_json(usage)
        return
    out.print(
        f"{usage['month']}: {usage['used']:,} of {usage['limit']:,} operations ({usage['plan']} plan)"
    )
    table(
        None,
        ["source", "operations"],
        [[s["source"], f"{s['operations']:,}"] for s in usage["sources"]],
    )
