"""The segmentation suite of ``tests/events/test_query.py`` (answers computed by hand on its
fixed world) run on the chdb store: the same syncs through the engine, the same HTTP V2
batch, the same questions, the same answers as on DuckDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from profilesync.events import ingest
from profilesync.events import query as q
from profilesync.events.projects import create_project
from profilesync.model import Connection
from profilesync.store import open_store
from profilesync.store.protocol import Store
from tests.conftest import Warehouse, run_sync, table_source
from tests.events.conftest import EVENTS, PROPS, World, ms, users
from tests.events.test_query import (  # noqa: F401 - collected here, on the chdb world
    test_buckets_are_the_days_asked_for,
    test_filters_on_profile_and_event_properties,
    test_group_by_event_property_and_field,
    test_grouped_by_a_profile_property_uses_the_current_value,
    test_grouped_by_the_value_at_event_time,
    test_known_lists_types_and_properties,
    test_profile_filter_with_profile_group,
    test_several_events_give_one_series_each,
    test_sum_and_average_of_an_event_property,
    test_top_groups_and_other,
    test_unique_users_do_not_add_up_across_days,
    test_unknown_names_are_refused_with_what_exists,
    test_user_lookup_shows_profile_and_events,
)
from tests.events.test_query import test_values_are_bound_not_spliced as values_are_bound
from tests.events.test_query import test_week_and_hour_intervals as week_and_hour_intervals
from tests.store.test_events import append, view

pytest.importorskip("chdb", reason="needs the clickhouse extra: pip install .[clickhouse]")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """``tests/events/conftest.py``'s world, built on chdb."""
    lake = Warehouse(tmp_path / "lake")
    lake.create("prod.users", users(["pro", "free", "free", "enterprise"]))
    store = open_store(tmp_path / "home", backend="chdb")
    try:
        store.add_connection(Connection("lake", "delta", {"path": str(lake.root)}))
        table_source(store, "users", "prod.users", "uid", PROPS)  # type: ignore[arg-type]
        run_sync(store, "users")  # type: ignore[arg-type]
        _, key = create_project(store, "web")
        answer = ingest.ingest(store, json.dumps({"api_key": key, "events": EVENTS}).encode())
        assert answer["events_ingested"] == len(EVENTS)
        lake.update("prod.users", "uid = 'user-0002'", {"plan": "'pro'"})
        run_sync(store, "users")  # type: ignore[arg-type]
        yield World(store, tmp_path / "home", lake, key)  # type: ignore[arg-type]
    finally:
        store.close()


# The two questions whose ClickHouse rendering differs most from DuckDB's: a key a JSON
# document lacks is NULL ("is set" holds for none), and a week bucket is a timestamp.


def test_values_are_bound_not_spliced_on_chdb(world: World) -> None:
    values_are_bound(world)


def test_week_and_hour_intervals_on_chdb(world: World) -> None:
    week_and_hour_intervals(world)


# A property of an event as every backend reads it from the JSON document: a string as
# itself, another value as its JSON text, a JSON null and a missing key as not set.
VALUES = ['"x"', '"2"', "12.5", "true", '{"c": 1}', '""', "null", None]


def test_an_event_property_reads_the_same_on_every_backend(store: Store) -> None:
    project, _ = create_project(store, "web")
    docs = [None if v is None else f'{{"p": {v}, "q": 1}}' for v in VALUES]
    append(store, project.id, [view(f"u-{i}", None, props=doc) for i, doc in enumerate(docs)])

    def ask(**spec: object) -> dict[str, list[int | float]]:
        day = {"start": "2024-05-01", "end": "2024-05-01", "events": ["View"]}
        answer = q.segmentation(store, q.SegmentationQuery(**{**day, **spec}))  # type: ignore[arg-type]
        return {s["label"]: s["values"] for s in answer["series"]}

    prop = {"kind": "event", "name": "p"}
    assert ask(filters=[{**prop, "op": "is set"}]) == {"View": [6]}
    assert ask(filters=[{**prop, "op": "is not set"}]) == {"View": [2]}
    assert ask(filters=[{**prop, "op": "is", "values": ["x", 12.5, True]}]) == {"View": [3]}
    assert ask(filters=[{**prop, "op": ">", "values": [1]}]) == {"View": [2]}
    assert ask(metric="sum", property=prop) == {"View": [14.5]}
    grouped = ask(group_by=prop, limit=10)
    assert grouped == {label: [1] for label in ("x", "2", "12.5", "true", '{"c":1}', "")} | {
        "(none)": [2]
    }


# Groups as clients send them in HTTP V2 bodies; answers counted by hand: View events on
# 2024-05-01 (day 1) and 05-02 (day 2) by company: acme day 1 user-0001 and user-0002,
# day 2 user-0001; globex day 2 user-0003; none day 1 user-0004 (a Purchase is not asked).
GROUPED = [
    ("View", "user-0001", 1, {"company": "acme"}),
    ("View", "user-0002", 1, {"company": "acme", "team": "red"}),
    ("View", "user-0003", 2, {"company": "globex"}),
    ("View", "user-0001", 2, {"company": "acme"}),
    ("View", "user-0004", 1, None),
    ("Purchase", "user-0002", 2, {"company": "acme"}),
]


def test_group_kind_filters_and_groups_by_the_events_groups(store: Store) -> None:
    _, key = create_project(store, "web")
    events = [
        {"event_type": kind, "user_id": user, "time": ms(day), **({"groups": g} if g else {})}
        for kind, user, day, g in GROUPED
    ]
    answer = ingest.ingest(store, json.dumps({"api_key": key, "events": events}).encode())
    assert answer["events_ingested"] == len(GROUPED)

    def ask(**spec: object) -> dict[str, list[int | float]]:
        days = {"start": "2024-05-01", "end": "2024-05-02", "events": ["View"]}
        answer = q.segmentation(store, q.SegmentationQuery(**{**days, **spec}))  # type: ignore[arg-type]
        return {s["label"]: s["values"] for s in answer["series"]}

    company = q.PropertyRef.parse("group:company")
    assert company == q.PropertyRef(kind="group", name="company")
    assert ask(group_by=company) == {"acme": [2, 1], "globex": [0, 1], "(none)": [1, 0]}
    acme = {"kind": "group", "name": "company", "values": ["acme"]}
    assert ask(filters=[acme]) == {"View": [2, 1]}
    assert ask(filters=[acme], metric="uniques") == {"View": [2, 1]}
    assert ask(filters=[{**acme, "op": "is not"}]) == {"View": [1, 1]}
    team = {"kind": "group", "name": "team"}
    assert ask(filters=[{**team, "op": "is set"}], group_by=company) == {"acme": [1, 0]}
    assert ask(filters=[{**team, "op": "is not set"}], metric="uniques") == {"View": [2, 2]}
