"""Renaming a property's display name: the stored values follow in place, on every backend."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from profilesync.errors import ConfigurationError
from profilesync.mapping import from_columns
from profilesync.model import Source
from profilesync.store.protocol import DELETED, Store
from tests.store.conftest import Net, apply, net, profiles


def renamed(store: Store, old: str, new: str) -> Source:
    source = store.get_source("users")
    props = tuple(replace(p, name=new) if p.name == old else p for p in source.mapping.properties)
    return store.rename_property(source, old, new, replace(source.mapping, properties=props))


def test_a_rename_keeps_every_value_and_meters_nothing(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": (None, 2.0)}))
    used = store.usage()["used"]
    updated = renamed(store, "Title", "Job title")
    assert updated.mapping.property_names == ["Job title", "Score"]
    assert store.get_source("users").mapping.property_names == ["Job title", "Score"]
    assert profiles(store) == {"u-0001": {"Job title": "a", "Score": 1.0}, "u-0002": {"Score": 2.0}}
    assert store.get_profile("u-0001", detail=True)["details"]["Job title"]["source"] == "users"
    assert {n: s.users for n, s in store.property_stats(updated).items()} == {
        "Job title": 1,
        "Score": 2,
    }
    assert store.usage()["used"] == used

    # the next sync speaks the new name: an unchanged user is no operation
    rows = pa.table(
        {
            "user_id": ["u-0001", "u-0002"],
            DELETED: [False, False],
            "Job title": ["a", "b"],
            "Score": [1.0, 2.0],
        }
    )
    result = apply(store, Net(rows), position="2")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    assert profiles(store)["u-0002"] == {"Job title": "b", "Score": 2.0}


def test_a_rename_before_the_first_sync_only_saves_the_mapping(store: Store) -> None:
    assert renamed(store, "Score", "score").mapping.property_names == ["Title", "score"]
    assert profiles(store) == {}


def test_a_rename_onto_another_sources_name_is_refused_and_changes_nothing(store: Store) -> None:
    apply(store, net({"u-0001": ("a", 1.0)}))
    store.add_source(Source("plans", "lake", from_columns("prod.plans", "uid", [("plan", "Plan")])))
    with pytest.raises(ConfigurationError, match="unique across sources"):
        renamed(store, "Title", "Plan")
    assert store.get_source("users").mapping.property_names == ["Title", "Score"]
    assert profiles(store) == {"u-0001": {"Title": "a", "Score": 1.0}}
