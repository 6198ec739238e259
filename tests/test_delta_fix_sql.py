"""A local Delta table has no name outside profilesync: its fix SQL names it by path, the
form Spark and Databricks accept, and the Python (deltalake) line given with it works."""

from __future__ import annotations

import re

import pytest
import sqlglot
from deltalake import DeltaTable
from sqlglot import exp

from profilesync.engine import sync as engine
from profilesync.errors import ChangeTrackingError
from profilesync.store import DuckDBStore
from tests.conftest import Warehouse, run_sync, table_source, users_table


def test_fix_sql_names_a_local_table_by_its_path_and_the_python_line_turns_the_feed_on(
    warehouse: Warehouse, store: DuckDBStore
) -> None:
    warehouse.create("crm.no_cdf", users_table(2), cdf=False)
    path = str(warehouse.root.resolve() / "crm" / "no_cdf")
    table_source(store, "crm", "crm.no_cdf", "uid", [("title", "Title")])
    report = engine.test_mapping(store, store.get_source("crm"))
    cdf = next(c for c in report["checks"] if c["name"] == "change data feed")
    assert cdf["level"] == "fail"
    assert cdf["fix_sql"] == (
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    assert "crm.no_cdf" not in cdf["fix_sql"]  # a name only profilesync knows
    # Databricks SQL reads it as the table at that path (schema `delta`, name the path)
    target = sqlglot.parse_one(cdf["fix_sql"], read="databricks").find(exp.Table)
    assert target is not None and (target.db, target.name) == ("delta", path)
    # the sync refuses with the same fix
    with pytest.raises(ChangeTrackingError, match=re.escape(f"delta.`{path}`")):
        run_sync(store, "crm")

    # the Python line given in the message, run as written, switches the feed on
    line = re.search(r"`(from deltalake import [^`]+)`", cdf["message"])
    assert line, cdf["message"]
    exec(line.group(1), {})  # the very line a user would paste
    assert DeltaTable(path).metadata().configuration["delta.enableChangeDataFeed"] == "true"
    again = engine.test_mapping(store, store.get_source("crm"))
    assert next(c for c in again["checks"] if c["name"] == "change data feed")["level"] == "pass"


def test_retention_fix_sql_names_the_path_too(warehouse: Warehouse, store: DuckDBStore) -> None:
    short = {"delta.logRetentionDuration": "interval 1 hours"}
    warehouse.create("crm.brief", users_table(2), **short)
    path = str(warehouse.root.resolve() / "crm" / "brief")
    table_source(store, "brief", "crm.brief", "uid", [("title", "Title")])
    report = engine.test_mapping(store, store.get_source("brief"))
    log = next(c for c in report["checks"] if c["name"] == "delta.logRetentionDuration")
    assert log["level"] == "fail"
    assert log["fix_sql"] == (
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
        "(delta.logRetentionDuration = 'interval 7 days')"
    )
