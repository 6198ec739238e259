"""The ``events`` and ``query`` commands through the real entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import Cli
from tests.events.conftest import build_world, ms


def test_projects_import_and_segmentation(tmp_path: Path, cli: Cli) -> None:
    build_world(tmp_path).store.close()
    made = cli.json("events", "projects", "add", "ios")
    assert len(made["api_key"]) == 32
    listed = cli.ok("events", "projects", "list").stdout
    assert "ios" in listed and made["api_key"] not in listed
    path = tmp_path / "more.jsonl"
    path.write_text(
        json.dumps(
            {
                "event_type": "Purchase",
                "user_id": "user-0003",
                "time": ms(3),
                "event_properties": {"amount": 4},
            }
        )
        + "\n"
        + json.dumps({"event_type": "Purchase", "user_id": "usr", "time": ms(3)})
        + "\n"
    )
    result = cli.json("events", "import", str(path), "--project", "ios")
    assert (result["imported"], result["rejected"]) == (1, 1)
    assert result["rejected_rows"] == [
        {"line": 2, "reasons": ["user_id is shorter than 5 characters"]}
    ]
    text = cli.ok("events", "import", str(path), "--project", "ios").stdout
    assert "imported 1 events" in text and "rejected line 2: user_id is shorter" in text

    args = ["query", "segmentation", "-e", "Purchase", "--from", "2024-05-01", "--to", "2024-05-03"]
    doc = cli.json(*args, "--group-by", "Plan", "--where", "profile:Country=US,FR")
    assert {s["label"]: s["values"] for s in doc["series"]} == {"pro": [2, 1, 0], "free": [0, 1, 2]}
    table = cli.ok(*args, "-g", "profile:Plan", "--metric", "sum", "--property", "amount").stdout
    assert "sum of Purchase by profile:Plan" in table
    assert "2024-05-02" in table and "100.00" in table
    project_only = cli.json(*args, "--project", "ios")
    assert project_only["series"][0]["values"] == [0, 0, 2]


def test_query_errors_say_what_to_fix(tmp_path: Path, cli: Cli) -> None:
    build_world(tmp_path).store.close()
    bad = cli("query", "segmentation", "-e", "Purchase", "-g", "profile:Tier")
    assert bad.returncode == 1
    assert "no profile property named 'Tier'; known: Country, Plan" in bad.stderr
    bad = cli("query", "segmentation", "-e", "Purchase", "--metric", "sum")
    assert bad.returncode == 1 and "needs a property" in bad.stderr
    bad = cli("query", "segmentation", "-e", "Purchase", "--where", "Plan")
    assert bad.returncode == 1 and "is not understood" in bad.stderr


def test_query_user(tmp_path: Path, cli: Cli) -> None:
    build_world(tmp_path).store.close()
    found = cli.json("query", "user", "user-0002")
    assert found["profile"]["properties"] == {"Plan": "pro", "Country": "US"}
    assert [e["user_properties"]["plan"] for e in found["events"]] == ["free", "free", "free"]
    text = cli.ok("query", "user", "user-0002").stdout
    assert "Plan" in text and "Purchase" in text


def test_demo_generates_events_for_the_demo_users(tmp_path: Path, cli: Cli) -> None:
    demo = cli.ok("demo", "--dir", str(tmp_path / "demo"))
    assert "profile now vs at event time" in demo.stdout
    home = Cli(tmp_path / "demo" / "home", tmp_path)
    known = home.json("events", "known")
    counts = {t["name"]: t["count"] for t in known["event_types"]}
    assert set(counts) == {"Page Viewed", "Feature Used", "Purchase Completed"}
    assert counts["Page Viewed"] > counts["Feature Used"] > counts["Purchase Completed"] > 20
    args = ["query", "segmentation", "-e", "Purchase Completed", "--interval", "week"]
    now = {s["label"]: s["total"] for s in home.json(*args, "-g", "profile:Title")["series"]}
    then = {s["label"]: s["total"] for s in home.json(*args, "-g", "user:Title")["series"]}
    # 100003 was promoted after its events: "Head of Data" only exists in the current profile
    assert now.get("Head of Data", 0) > 0 and "Head of Data" not in then
    assert sum(now.values()) == sum(then.values()) == counts["Purchase Completed"]
    amounts = home.json(*args, "--metric", "sum", "--property", "amount")
    assert amounts["series"][0]["total"] > 0
    found = home.json("query", "user", "100003")
    assert found["profile"]["properties"]["Title"] == "Head of Data"
    assert found["events"][0]["user_properties"]["Title"] != "Head of Data"
    assert_demo_analyses(demo.stdout, home)


def assert_demo_analyses(text: str, home: Cli) -> None:
    """The demo's funnel and retention tables hold what their ``Try:`` commands answer."""
    steps = ["-e", "Page Viewed", "-e", "Feature Used", "-e", "Purchase Completed"]
    assert "query funnel -e 'Page Viewed'" in text
    funnel = home.json("query", "funnel", *steps, "--window", "3d")
    for i, step in enumerate(funnel["steps"], 1):
        assert re.search(rf"│ {i}\. {step['event_type']}\s+│ {step['users']}\s+│", text), step
    assert 0 < funnel["steps"][2]["users"] < funnel["steps"][0]["users"]
    week = re.search(r"--from\s+(\S+)\s+--to\s+(\S+)\s+-g\s+profile:Seniority", text)
    assert week, text
    retention = home.json(
        "query", "retention", "--start", "Page Viewed", "--return", "Purchase Completed",
        "--interval", "week", "--buckets", "3", "--from", week[1], "--to", week[2],
        "-g", "profile:Seniority",
    )  # fmt: skip
    assert len(retention["groups"]) >= 4
    for group in [{"label": "all users", **retention}, *retention["groups"]]:
        cohort = group["cohorts"][0]
        cells = [group["label"], str(cohort["users"])] + [f"{r:.0%}" for r in cohort["rates"]]
        assert re.search("│ " + r"\s+│ ".join(map(re.escape, cells)) + r"\s+│", text), cells
