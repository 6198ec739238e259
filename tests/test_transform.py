"""Map/validate/compact over plain Arrow batches: ordering, net results and reject reasons."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest

from profilesync.engine.transform import DELETED, REJECTED_SAMPLE, transform
from profilesync.errors import ConfigurationError, RetentionExceededError
from profilesync.mapping import from_columns, from_query
from profilesync.model import Mapping, PropertyMapping
from profilesync.sources.base import DELETE, OP, ORD, UPSERT

MAPPING = from_columns("t", "id", [("plan", "Plan")])
STRING = pa.string()


def changes(*rows: tuple[Any, str | None, str, int], id_type: pa.DataType = STRING) -> Any:
    """Rows of (id, plan, op, ord), split into one batch per row to test ordering across batches."""
    schema = pa.schema(
        [("id", id_type), ("plan", pa.string()), (OP, pa.string()), (ORD, pa.int64())]
    )
    batches = [
        pa.RecordBatch.from_pylist([dict(zip(schema.names, row, strict=True))], schema=schema)
        for row in rows
    ]
    return pa.RecordBatchReader.from_batches(schema, batches)


def snapshot(*rows: tuple[str, str]) -> pa.RecordBatchReader:
    """Rows of (id, plan) as a snapshot reads them: no change columns."""
    table = pa.table({"id": [r[0] for r in rows], "plan": [r[1] for r in rows]})
    return table.to_reader()


def net(result: Any) -> dict[str, tuple[bool, Any]]:
    return {r["user_id"]: (r[DELETED], r.get("Plan")) for r in result.net.to_pylist()}


def test_the_last_change_by_commit_order_wins_whatever_the_batch_order() -> None:
    result = transform(
        changes(
            ("user-1", "c", UPSERT, 7),
            ("user-1", "a", UPSERT, 3),
            ("user-1", "b", UPSERT, 5),
            ("user-2", "x", UPSERT, 1),
        ),
        MAPPING,
    )
    assert net(result) == {"user-1": (False, "c"), "user-2": (False, "x")}
    assert result.read == 4


def test_insert_then_delete_nets_to_a_delete_and_delete_then_insert_to_the_insert() -> None:
    result = transform(
        changes(
            ("user-1", "a", UPSERT, 3),  # inserted in commit 1
            ("user-1", "a", DELETE, 4),  # deleted in commit 2
            ("user-2", "old", DELETE, 6),  # one commit (3): delete before the upsert
            ("user-2", "new", UPSERT, 7),
        ),
        MAPPING,
    )
    assert net(result) == {"user-1": (True, "a"), "user-2": (False, "new")}


def test_reject_reasons_name_the_problem_and_keep_the_row() -> None:
    result = transform(
        changes(
            ("abc", "pro", UPSERT, 1), (None, "free", UPSERT, 2), ("good-1", "team", UPSERT, 3)
        ),
        MAPPING,
    )
    assert net(result) == {"good-1": (False, "team")}
    assert result.rejected_count == 2
    rejected = [(r["reason"], r["row"]) for r in result.rejected.to_pylist()]
    assert rejected == [
        ('user_id "abc" is shorter than 5 characters', '{"user_id":"abc","Plan":"pro"}'),
        ("user_id is null", '{"user_id":null,"Plan":"free"}'),
    ]


def test_deletes_with_a_bad_user_id_are_dropped_not_reported() -> None:
    # the pre-image of a row whose id was too short says nothing about a stored user
    result = transform(changes(("abc", "pro", DELETE, 2), ("abcdef", None, UPSERT, 3)), MAPPING)
    assert (result.rejected_count, net(result)) == (0, {"abcdef": (False, None)})


@pytest.mark.parametrize("id_type", [pa.int16(), pa.int32(), pa.int64(), pa.uint64()])
def test_integer_user_ids_become_decimal_strings(id_type: pa.DataType) -> None:
    result = transform(
        changes((12, "a", UPSERT, 1), (12345, "b", UPSERT, 2), id_type=id_type), MAPPING
    )
    assert net(result) == {"12345": (False, "b")}
    assert result.rejected.column("reason").to_pylist() == [
        'user_id "12" is shorter than 5 characters'
    ]


@pytest.mark.parametrize(
    ("id_type", "value", "typename"),
    [(pa.float64(), 12345.0, "DOUBLE"), (pa.bool_(), True, "BOOLEAN"), (pa.date32(), None, "")],
)
def test_other_user_id_types_are_rejected(id_type: pa.DataType, value: Any, typename: str) -> None:
    result = transform(changes((value, "a", UPSERT, 1), id_type=id_type), MAPPING)
    assert result.net.num_rows == 0
    reason = result.rejected.column("reason")[0].as_py()
    if value is None:
        assert reason == "user_id is null"
    else:
        assert reason.startswith(f"user_id has type {typename} (value ")
        assert reason.endswith("expected a string or an integer")


@pytest.mark.parametrize("text_type", [pa.large_string(), pa.string_view()])
def test_string_kinds_delta_returns_are_read(text_type: pa.DataType) -> None:
    schema = pa.schema([("id", text_type), ("plan", text_type)])
    reader = pa.RecordBatchReader.from_batches(
        schema, [pa.RecordBatch.from_pylist([{"id": "user-1", "plan": "p"}], schema=schema)]
    )
    assert net(transform(reader, MAPPING)) == {"user-1": (False, "p")}


def test_a_snapshot_without_op_columns_is_all_upserts() -> None:
    table = pa.table({"id": ["user-1", "user-2"], "plan": ["a", None]})
    result = transform(table.to_reader(), MAPPING)
    assert net(result) == {"user-1": (False, "a"), "user-2": (False, None)}


def test_where_filter_turns_rows_that_stop_matching_into_deletes() -> None:
    mapping = from_query(
        'SELECT id AS "user_id", upper(plan) AS "Plan" FROM t WHERE plan <> \'free\''
    )
    result = transform(
        changes(
            ("user-1", "pro", UPSERT, 1),
            ("user-2", "free", UPSERT, 1),
            ("user-3", None, UPSERT, 1),  # NULL is not a match either
        ),
        mapping,
    )
    assert net(result) == {
        "user-1": (False, "PRO"),
        "user-2": (True, "FREE"),
        "user-3": (True, None),
    }


def test_rejected_rows_are_all_counted_but_a_sample_is_kept() -> None:
    n = REJECTED_SAMPLE + 5
    table = pa.table({"id": ["x"] * n, "plan": ["p"] * n})
    result = transform(table.to_reader(), MAPPING)
    assert (result.rejected_count, result.rejected.num_rows) == (n, REJECTED_SAMPLE)


def test_a_mapping_that_does_not_evaluate_names_the_table_and_the_fix() -> None:
    mapping = Mapping("prod.t", '"id"', (), ("id",), where="no_such_column > 1")
    with pytest.raises(
        ConfigurationError, match=r"mapping of table prod\.t could not be evaluated"
    ):
        transform(pa.table({"id": ["user-1"]}).to_reader(), mapping)


def test_an_error_a_source_raises_while_streaming_reaches_the_caller_as_itself() -> None:
    schema = pa.schema([("id", pa.string()), ("plan", pa.string())])

    def batches() -> Any:
        yield pa.RecordBatch.from_pylist([{"id": "user-1", "plan": "a"}], schema=schema)
        raise RetentionExceededError("history expired: run --resync")

    with pytest.raises(RetentionExceededError, match="history expired"):
        transform(pa.RecordBatchReader.from_batches(schema, batches()), MAPPING)


def test_a_user_with_several_rows_at_once_is_rejected_and_removed_every_time() -> None:
    """Duplicate keys (in a snapshot, or in one commit) have no single profile: which row
    would win is arbitrary, so the rows are rejected with the reason and the user removed."""
    rows = [
        ("user-1", "gold", UPSERT, 0),
        ("user-1", "free", UPSERT, 0),
        ("user-2", "pro", UPSERT, 0),
        ("user-3", "a", UPSERT, 4),  # superseded duplicates do not matter
        ("user-3", "b", UPSERT, 4),
        ("user-3", "c", UPSERT, 7),
    ]
    for _ in range(3):  # the same answer on every run
        result = transform(changes(*rows), MAPPING)
        assert net(result) == {
            "user-1": (True, None),
            "user-2": (False, "pro"),
            "user-3": (False, "c"),
        }
        assert result.rejected_count == 2
        assert set(result.rejected.column("reason").to_pylist()) == {
            'user_id "user-1" has 2 rows at once (duplicate keys in the table or in one commit): '
            "a profile takes one row per user"
        }


def test_within_one_commit_a_matching_row_wins_over_a_filtered_out_one() -> None:
    mapping = from_query("SELECT id AS user_id, plan AS Plan FROM t WHERE plan <> 'x'")
    rows = [("user-1", "x", UPSERT, 0), ("user-1", "pro", UPSERT, 0)]
    for order in (rows, rows[::-1]):
        assert net(transform(changes(*order), mapping)) == {"user-1": (False, "pro")}


def test_integers_past_a_double_keep_every_digit() -> None:
    """A 128-bit integer property (a cast in the mapping) reaches the store exact: the rows
    travel through Parquet, which would write it as a double."""
    big = 2**53 + 1
    mapping = from_columns("t", "id", [("plan", "Plan")])
    mapping = replace(
        mapping,
        properties=(
            *mapping.properties,
            PropertyMapping("Big", f"CAST(length(plan) AS HUGEINT) * 0 + {big}"),
        ),
    )
    for reader in (changes(("user-1", "a", UPSERT, 1)), snapshot(("user-2", "b"))):
        result = transform(reader, mapping)
        assert [r["Big"] for r in result.net.to_pylist()] == [big]
