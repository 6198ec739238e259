"""A sync is all or nothing at every fault point: no rows, checkpoint, run or usage of it
is left behind (an exception is injected where ``PROFILESYNC_FAULT`` would kill the
process; tests/test_crash.py kills real processes)."""

from __future__ import annotations

import pytest

from profilesync import faults
from profilesync.store.protocol import Store
from tests.store.conftest import apply, net, profiles


class Injected(Exception):
    pass


@pytest.mark.parametrize("point", ["apply", "mid_apply", "before_commit"])
def test_nothing_is_half_applied(store: Store, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not store.capabilities.atomic_apply:
        pytest.skip("the backend does not promise one transaction per sync")
    apply(store, net({"u-0001": ("a", 1.0), "u-0002": ("b", 2.0)}))
    before = (
        profiles(store),
        store.get_source("users").checkpoint,
        store.usage(),
        store.runs("users"),
    )

    def crash(at: str) -> None:
        raise Injected(at)

    monkeypatch.setenv(faults.ENV, point)
    monkeypatch.setattr(faults, "crash", crash)
    with pytest.raises(Injected):
        apply(
            store,
            net({"u-0001": ("A", 1.0), "u-0003": ("c", 3.0)}, deleted=["u-0002"]),
            position="2",
        )
    after = (
        profiles(store),
        store.get_source("users").checkpoint,
        store.usage(),
        store.runs("users"),
    )
    assert after == before
    # and the store is usable: the same changes apply cleanly afterwards
    monkeypatch.delenv(faults.ENV)
    again = apply(store, net({"u-0001": ("A", 1.0)}, deleted=["u-0002"]), position="2")
    assert (again.updated, again.deleted) == (1, 1)
