"""Applying net changes: what a sync leaves in any store, and what it meters."""

from __future__ import annotations

import pyarrow as pa
import pytest

from profilesync.engine.quota import Quota
from profilesync.errors import NeedsResyncError, NotFoundError, QuotaExceededError
from profilesync.store.protocol import Store
from tests.store.conftest import apply, net, profiles


def test_the_backend_says_what_it_guarantees(store: Store) -> None:
    assert store.capabilities.dialect == store.dialect
    assert isinstance(store.capabilities.atomic_apply, bool)


def test_inserts_updates_deletes_and_nulls_out(store: Store) -> None:
    first = apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0), "u-0003": ("c", 3.0)}))
    assert (first.inserted, first.updated, first.deleted) == (3, 0, 0)

    second = apply(
        store,
        net({"u-0001": ("A", 1.0), "u-0002": (None, 2.0)}, deleted=["u-0003", "u-9999"]),
        position="2",
    )
    # a delete of a user the store never had is no operation
    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (0, 2, 1, 0)
    assert profiles(store) == {
        "u-0001": {"Title": "A", "Score": 1.0},
        "u-0002": {"Score": 2.0},  # NULL is no value
    }
    assert store.get_profile("u-0002", detail=True)["details"]["Score"]["source"] == "users"
    with pytest.raises(NotFoundError):
        store.get_profile("u-0003")
    assert store.get_source("users").checkpoint is not None
    assert store.get_source("users").checkpoint.position == "2"  # type: ignore[union-attr]


def test_no_op_updates_are_not_written_nor_metered(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0)}))
    used = store.usage()["used"]
    again = apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.5)}), position="2")
    assert (again.updated, again.unchanged, again.operations) == (1, 1, 1)
    assert store.usage()["used"] == used + 1


def test_a_full_diff_deletes_the_users_it_does_not_hold(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0), "u-0003": ("c", 3.0)}))
    diff = apply(store, net({"u-0002": ("b", 2.0)}), position="2", full=True)
    assert (diff.inserted, diff.updated, diff.deleted, diff.unchanged) == (0, 0, 2, 1)
    assert list(profiles(store)) == ["u-0002"]
    assert store.profile_count(store.get_source("users")) == 1


def test_a_type_change_converts_stored_values_when_all_convert(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}, types=(pa.string(), pa.float64())))
    apply(store, net({"u-0002": ("b", "x")}, types=(pa.string(), pa.string())), position="2")
    assert profiles(store)["u-0001"]["Score"] == "1.0"
    stats = store.property_stats(store.get_source("users"))
    assert stats["Score"].type == "VARCHAR"


def test_a_type_change_that_cannot_convert_asks_for_a_resync(store: Store) -> None:
    apply(store, net({"u-0001": ("a", "high")}, types=(pa.string(), pa.string())))
    before = (profiles(store), store.usage()["used"], store.get_source("users").checkpoint)
    with pytest.raises(NeedsResyncError):
        apply(store, net({"u-0002": ("b", 2)}, types=(pa.string(), pa.int64())), position="2")
    assert (profiles(store), store.usage()["used"], store.get_source("users").checkpoint) == before
    # a full snapshot refills the column instead
    full = apply(
        store,
        net({"u-0001": ("a", 1), "u-0002": ("b", 2)}, types=(pa.string(), pa.int64())),
        position="3",
        full=True,
    )
    assert full.status == "success"
    assert profiles(store)["u-0002"]["Score"] == 2


def test_the_quota_refuses_a_sync_before_anything_is_applied(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    with pytest.raises(QuotaExceededError):
        apply(store, net({"u-0002": ("b", 2.0), "u-0003": ("c", 3.0)}), quota=Quota("growth", 2))
    assert list(profiles(store)) == ["u-0001"]
    assert store.usage()["used"] == 1


def test_property_statistics_and_removal(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": (None, 2.0)}))
    source = store.get_source("users")
    stats = store.property_stats(source)
    assert {name: (s.type, s.users) for name, s in stats.items()} == {
        "Title": ("VARCHAR", 1),
        "Score": ("DOUBLE", 2),
    }
    assert stats["Title"].last_changed is not None
    assert [(s.name, types) for s, types in store.profile_schemas()] == [
        ("users", {"Title": "VARCHAR", "Score": "DOUBLE"})
    ]
    mapping = source.mapping
    slim = type(mapping)(
        mapping.table,
        mapping.user_id,
        tuple(p for p in mapping.properties if p.name != "Title"),
        tuple(c for c in mapping.columns if c != "title"),
        mapping.where,
        mapping.query,
    )
    updated = store.drop_property(source, "Title", slim)
    assert list(updated.mapping.property_names) == ["Score"]
    assert profiles(store) == {"u-0001": {"Score": 1.0}, "u-0002": {"Score": 2.0}}


def test_deleting_a_source_removes_its_profiles_and_keeps_its_runs(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    store.delete_source("users")
    assert profiles(store) == {}
    assert store.runs("users")[0]["status"] == "success"
