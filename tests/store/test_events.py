"""Events in any store: appended in batches, each insert_id kept once in 7 days,
projects with hashed keys, the catalog of names, and a segmentation over them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from profilesync.events import dedup, ingest
from profilesync.events import query as q
from profilesync.events.projects import (
    create_project,
    delete_project,
    project_for_key,
    rotate_key,
)
from profilesync.events.validate import FIELDS, STANDARD_FIELDS, scratch
from profilesync.store.protocol import Store
from tests.store.conftest import apply, net

DAY = datetime(2024, 5, 1, 12, tzinfo=UTC)


def events(rows: list[dict[str, Any]]) -> pa.Table:
    """Valid, typed events as validation yields them (only the given fields set)."""
    types = {
        "event_type": pa.string(),
        "user_id": pa.string(),
        "device_id": pa.string(),
        "time": pa.timestamp("us"),
        "event_properties": pa.string(),
        "user_properties": pa.string(),
        "insert_id": pa.string(),
    }
    types.update(
        {
            n: pa.float64() if t == "DOUBLE" else pa.int64() if t == "BIGINT" else pa.string()
            for n, t in STANDARD_FIELDS.items()
        }
    )
    return pa.table({f: pa.array([r.get(f) for r in rows], types[f]) for f in FIELDS})


def view(
    user: str, insert_id: str | None, day: int = 0, props: str | None = None
) -> dict[str, Any]:
    return {
        "event_type": "View",
        "user_id": user,
        "time": (DAY + timedelta(days=day)).replace(tzinfo=None),
        "insert_id": insert_id,
        "event_properties": props,
    }


def append(store: Store, project_id: int, rows: list[dict[str, Any]]) -> ingest.Appended:
    with ingest.Writer(store, project_id, now=DAY) as writer:
        writer.append(ingest.prepare(scratch(), events(rows)))
    return writer.total


def test_projects_keep_only_a_hash_of_their_key(store: Store) -> None:
    project, key = create_project(store, "web")
    assert project_for_key(store, key) == project
    assert key not in project.key_hint and project.key_hint.startswith(key[:4])
    _, new_key = rotate_key(store, "web")
    assert project_for_key(store, key) is None
    assert getattr(project_for_key(store, new_key), "id", None) == project.id
    assert [p.name for p in store.events.list_projects()] == ["web"]


def test_an_insert_id_is_stored_once_across_batches_and_store_objects(
    store: Store, open_home: Callable[[], Store]
) -> None:
    project, _ = create_project(store, "web")
    first = append(
        store, project.id, [view("u-0001", "a"), view("u-0001", "a"), view("u-0002", None)]
    )
    assert (first.stored, first.duplicates) == (2, 1)
    second = append(store, project.id, [view("u-0001", "a"), view("u-0003", "b")])
    assert (second.stored, second.duplicates) == (1, 1)
    with open_home() as other:  # another store object on the file sees the same ids
        third = append(other, project.id, [view("u-0003", "b"), view("u-0004", "c")])
    assert (third.stored, third.duplicates) == (1, 1)
    # the same insert_id in another project is another event
    other_project, _ = create_project(store, "ios")
    assert append(store, other_project.id, [view("u-0001", "a")]).stored == 1
    # a new process rebuilds its index from the stored events
    dedup._indexes.clear()
    fourth = append(store, project.id, [view("u-0004", "c"), view("u-0001", "a"), view("u-5", "e")])
    assert (fourth.stored, fourth.duplicates) == (1, 2)
    assert delete_project(store, "web") == 5


def test_dedup_keys_on_device_and_insert_id_also_after_a_restart(store: Store) -> None:
    project, _ = create_project(store, "web")
    phone = {**view("u-0001", "a"), "device_id": "phone-1"}
    laptop = {**view("u-0001", "a"), "device_id": "laptop-1"}
    assert append(store, project.id, [phone]).stored == 1
    dedup._indexes.clear()  # a new process rebuilds its index from the stored events
    again = append(store, project.id, [phone, laptop])  # a retry, and another device
    assert (again.stored, again.duplicates) == (1, 1)


def test_a_failed_batch_stores_nothing(store: Store) -> None:
    project, _ = create_project(store, "web")
    try:
        with ingest.Writer(store, project.id, now=DAY) as writer:
            writer.append(ingest.prepare(scratch(), events([view("u-0001", "x")])))
            raise RuntimeError("the client went away")
    except RuntimeError:
        pass
    # the id was never committed: it is not a duplicate now
    assert append(store, project.id, [view("u-0001", "x")]).stored == 1


def test_the_catalog_lists_the_names_seen(store: Store) -> None:
    project, _ = create_project(store, "web")
    append(store, project.id, [view("u-0001", "a", props='{"page": "/", "ref": "x"}')])
    assert store.events.catalog(project.id) == [
        ("event", "page", ["View"]),
        ("event", "ref", ["View"]),
    ]
    assert store.events.catalog(None) == store.events.catalog(project.id)


def test_a_segmentation_joins_events_with_current_profiles(store: Store) -> None:
    apply(store, net({"u-0001": ("pro", 1.0), "u-0002": ("free", 2.0)}))
    project, _ = create_project(store, "web")
    append(
        store,
        project.id,
        [view("u-0001", "a"), view("u-0001", "b", day=1), view("u-0002", "c"), view("u-0009", "d")],
    )
    spec: dict[str, Any] = {
        "events": ["View"],
        "start": "2024-05-01",
        "end": "2024-05-02",
        "group_by": {"kind": "profile", "name": "Title"},
    }
    answer = q.segmentation(store, q.SegmentationQuery(**spec))  # type: ignore[arg-type]
    assert {s["label"]: s["values"] for s in answer["series"]} == {
        "pro": [1, 1],
        "free": [1, 0],
        "(none)": [1, 0],
    }
