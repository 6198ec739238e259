"""``group:<type>``: events sent with ``groups`` through ``/2/httpapi``, asked by their group
over the JSON API and the command line; answers counted by hand.

Sent (View unless said): day 1 user-0001 acme, user-0002 acme (team red), user-0004 no
group, a Purchase of user-0002 at acme; day 2 user-0003 globex, user-0001 acme.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profilesync.events import projects
from profilesync.store import DuckDBStore
from tests.conftest import Cli
from tests.events.conftest import ms, serving

SENT = [
    ("View", "user-0001", 1, {"company": "acme"}),
    ("View", "user-0002", 1, {"company": "acme", "team": "red"}),
    ("View", "user-0004", 1, None),
    ("Purchase", "user-0002", 1, {"company": "acme"}),
    ("View", "user-0003", 2, {"company": "globex"}),
    ("View", "user-0001", 2, {"company": "acme"}),
]
DAYS = {"start": "2024-05-01", "end": "2024-05-02", "events": ["View"]}


def labelled(answer: dict[str, Any]) -> dict[str, list[Any]]:
    return {s["label"]: s["values"] for s in answer["series"]}


def test_events_sent_with_groups_are_asked_by_group(tmp_path: Path, cli: Cli) -> None:
    with DuckDBStore(tmp_path / "home") as store:
        _, key = projects.create_project(store, "web")
    events = [
        {"event_type": kind, "user_id": user, "time": ms(day) + i, **({"groups": g} if g else {})}
        for i, (kind, user, day, g) in enumerate(SENT)
    ]
    with serving(tmp_path / "home") as served:
        sent = served.anon.post("/2/httpapi", json={"api_key": key, "events": events})
        assert sent.status_code == 200, sent.text

        def ask(**spec: Any) -> dict[str, list[Any]]:
            resp = served.api.post("/api/query/segmentation", json={**DAYS, **spec})
            assert resp.status_code == 200, resp.text
            return labelled(resp.json())

        company = {"kind": "group", "name": "company"}
        assert ask(group_by=company) == {"acme": [2, 1], "globex": [0, 1], "(none)": [1, 0]}
        acme = {**company, "values": ["acme"]}
        assert ask(filters=[acme]) == {"View": [2, 1]}
        assert ask(filters=[acme], group_by={"kind": "group", "name": "team"}) == {
            "red": [1, 0],
            "(none)": [1, 1],
        }
        purchases = ask(filters=[acme], events=["View", "Purchase"], metric="uniques")
        assert purchases == {"View": [2, 1], "Purchase": [1, 0]}

    args = ["query", "segmentation", "-e", "View", "--from", "2024-05-01", "--to", "2024-05-02"]
    doc = cli.json(*args, "--where", "group:company = acme", "--group-by", "group:company")
    assert labelled(doc) == {"acme": [2, 1]}
    doc = cli.json(*args, "--where", "group:company != acme")
    assert labelled(doc) == {"View": [1, 1]}
