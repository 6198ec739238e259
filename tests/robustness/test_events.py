"""Bad input to the events surfaces: ``/2/httpapi``, segmentation (API, page, CLI), ``events import``.

Every case is refused cleanly (a 400 in the HTTP V2 shape naming the event index and
field, a 4xx ``{code, message}``, or exit 1 with one ``error:`` line) and a refused
request leaves the store as it was.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilesync.events import validate
from tests.conftest import Cli
from tests.events.conftest import PASSWORD, Served, build_world, ms, serving
from tests.robustness.conftest import assert_api_refused, assert_cli_refused, store_state

GOOD = {"event_type": "Probe", "user_id": "user-0001", "time": ms(2)}


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep (text: Python's encoder would recurse)."""
    return '{"a":' * (depth - 1) + '{"a":1' + "}" * depth


def body(key: str, *events: str) -> bytes:
    """An HTTP V2 body whose events are given as JSON text."""
    return f'{{"api_key": {json.dumps(key)}, "events": [{", ".join(events)}]}}'.encode()


def event(**fields: Any) -> str:
    return json.dumps({**GOOD, **fields})


def with_raw(field: str, raw: str) -> str:
    """A good event with ``field`` set to the JSON text ``raw`` (NaN, deep objects...)."""
    rest = {k: v for k, v in GOOD.items() if k != field}
    return json.dumps(rest)[:-1] + f', "{field}": {raw}' + "}"


@contextmanager
def ui(s: Served) -> Iterator[httpx.Client]:
    """A client signed in to the pages."""
    with httpx.Client(base_url=s.url, timeout=60) as client:
        login = {"username": "admin", "password": PASSWORD, "next": "/"}
        assert client.post("/login", data=login).status_code == 303
        yield client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    tmp = tmp_path_factory.mktemp("events")
    world = build_world(tmp)
    key = world.api_key
    world.store.close()
    with serving(tmp / "home") as s:
        yield s, key


def events_state(s: Served) -> list[Any]:
    """The events side of the store, read under the server's lock."""
    with s.app.state.store_lock:
        con = s.app.state.store.con
        return [
            con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("events", "event_catalog", "projects")
        ]


# -- POST /2/httpapi ---------------------------------------------------------------------

#: (case, event JSON text, field named in the 400)
BAD_EVENTS = [
    ("2,000 levels deep", with_raw("event_properties", nested(2000)), "event_properties"),
    ("one level past the limit", with_raw("user_properties", nested(33)), "user_properties"),
    ("NaN in properties", with_raw("event_properties", '{"amount": NaN}'), "event_properties"),
    ("Infinity revenue", with_raw("revenue", "Infinity"), "revenue"),
    ("number past a double", with_raw("event_properties", '{"n": [1e400]}'), "event_properties"),
    ("lowercase nan time", with_raw("time", "nan"), "time"),
    ("properties over 64 KB", event(event_properties={"s": "x" * 70_000}), "event_properties"),
    ("1 MB-ish event_type", event(event_type="x" * 2_000), "event_type"),
    ("escape codes in event_type", event(event_type="Buy\x1b[2J"), "event_type"),
    ("newline in user_id", event(user_id="user\n0001"), "user_id"),
    ("time in year 99999", event(time="99999-01-01"), "time"),
    ("event_type a number", event(event_type=5), "event_type"),
    ("user_id an object", event(user_id={"id": 1}), "user_id"),
    ("device_id a list", event(user_id=None, device_id=[1]), "device_id"),
    ("time a boolean", event(time=True), "time"),
    ("event_properties a string", event(event_properties="amount=5"), "event_properties"),
    ("user_properties a list", event(user_properties=[1, 2]), "user_properties"),
    ("insert_id an object", event(insert_id={"x": 1}), "insert_id"),
    ("session_id text", event(session_id="abc"), "session_id"),
    ("revenue text", event(revenue="lots"), "revenue"),
    ("platform a list", event(platform=["iOS"]), "platform"),
]


@pytest.mark.parametrize(
    ("text", "field"), [c[1:] for c in BAD_EVENTS], ids=[c[0] for c in BAD_EVENTS]
)
def test_an_invalid_event_refuses_the_batch_naming_index_and_field(
    served: tuple[Served, str], text: str, field: str
) -> None:
    s, key = served
    before = events_state(s)
    resp = s.anon.post("/2/httpapi", content=body(key, event(), text))
    assert_api_refused(resp, "invalid", status=400)
    problems = resp.json()["invalid_events"]
    assert {(p["index"], p["field"]) for p in problems} == {(1, field)}, problems
    assert events_state(s) == before


#: (case, whole request body, words of the answer)
BAD_BODIES = [
    ("empty body", b"", "JSON object"),
    ("blank body", b"   ", "JSON object"),
    ("not UTF-8", b"\xff\xfe{}", "UTF-8"),
    ("gzip bytes", gzip.compress(b'{"api_key": "k", "events": []}'), "UTF-8"),
    ("a JSON array", b"[]", "JSON object"),
    ("non-string keys", b'{"api_key": "k", "events": [{1: 2}]}', "JSON object"),
    ("trailing garbage", b'{"api_key": "k", "events": []} x', "JSON object"),
    ("events an object", b'{"api_key": "k", "events": {"a": 1}}', "events array"),
    ("no api_key", b'{"events": []}', "api_key"),
    ("100,000 nested arrays", b"[" * 100_000 + b"]" * 100_000, "JSON object"),
]


@pytest.mark.parametrize(
    ("raw", "word"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_a_malformed_body_is_a_400(served: tuple[Served, str], raw: bytes, word: str) -> None:
    s, _ = served
    before = events_state(s)
    resp = s.anon.post("/2/httpapi", content=raw, headers={"Content-Type": "text/plain"})
    assert_api_refused(resp, word, status=400)
    assert events_state(s) == before


def test_limits_are_inclusive_and_a_deep_event_never_breaks_the_lookup(
    served: tuple[Served, str],
) -> None:
    s, key = served
    deepest = with_raw("event_properties", nested(validate.MAX_DEPTH))
    ok = s.anon.post("/2/httpapi", content=body(key, deepest))
    assert ok.status_code == 200, ok.text
    big = event(event_properties={"s": "x" * (validate.MAX_PROPERTIES_BYTES - 100)})
    assert s.anon.post("/2/httpapi", content=body(key, big)).status_code == 200
    # properties stored by a version that did not refuse them: the pages still answer
    with s.app.state.store_lock:
        s.app.state.store.con.execute(
            "UPDATE events SET event_properties = ? WHERE event_type = 'Probe'",
            ['{"n": NaN, "deep": ' + nested(3000) + "}"],
        )
    user = s.api.get("/api/users/user-0001")
    assert user.status_code == 200, user.text
    probe = next(e for e in user.json()["events"] if e["event_type"] == "Probe")
    assert list(probe["event_properties"]) == ["(unreadable)"]
    with ui(s) as pages:
        assert pages.get("/users", params={"user_id": "user-0001"}).status_code == 200


# -- segmentation ------------------------------------------------------------------------

QUERY: dict[str, Any] = {"events": ["Purchase"], "start": "2024-05-01", "end": "2024-05-03"}
#: (case, fields over QUERY, words of the message)
BAD_QUERIES = [
    ("end on the last day", {"end": "9999-12-31"}, ["end", "9999-12-30"]),
    ("start before 1970", {"start": "1969-12-31"}, ["start", "1970-01-01"]),
    ("start in year 1", {"start": "0001-01-01", "interval": "month"}, ["start", "1970-01-01"]),
    ("a zone past year 1", {"start": "0001-01-01T00:00:00+14:00"}, ["start", "range"]),
    ("end before start", {"start": "2024-05-03", "end": "2024-05-01"}, ["end", "start"]),
    ("24 years of hours", {"start": "2000-01-01", "interval": "hour"}, ["5,000", "buckets"]),
    ("year 10000", {"end": "10000-01-01"}, ["end"]),
    ("no such month", {"end": "2024-13-01"}, ["end"]),
    ("end a list", {"end": [2024]}, ["end"]),
    ("events of numbers", {"events": [1]}, ["events"]),
    ("empty event type", {"events": [""]}, ["empty"]),
    ("limit too large", {"limit": 10**30}, ["limit"]),
]


@pytest.mark.parametrize(
    ("extra", "words"), [c[1:] for c in BAD_QUERIES], ids=[c[0] for c in BAD_QUERIES]
)
def test_a_bad_segmentation_is_a_4xx_naming_the_field(
    served: tuple[Served, str], extra: dict[str, Any], words: list[str]
) -> None:
    s, _ = served
    resp = s.api.post("/api/query/segmentation", json={**QUERY, **extra})
    assert_api_refused(resp, *words)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", "application/json"),
        (b'{"events": ["Purchase"], "limit": NaN}', "application/json"),
        (b"\x00\xff", "application/json"),
        (b"events=Purchase", "text/plain"),
    ],
    ids=["empty", "NaN", "binary", "form text"],
)
def test_a_malformed_segmentation_body_is_a_422(
    served: tuple[Served, str], raw: bytes, kind: str
) -> None:
    s, _ = served
    resp = s.api.post("/api/query/segmentation", content=raw, headers={"Content-Type": kind})
    assert_api_refused(resp, status=422)


def test_the_segmentation_page_shows_a_date_out_of_range(served: tuple[Served, str]) -> None:
    s, _ = served
    with ui(s) as pages:
        page = pages.get("/segmentation", params={"event": "Purchase", "end": "9999-12-31"})
    assert page.status_code == 200
    assert "out of range" in page.text and "9999-12-30" in page.text


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    build_world(tmp_path).store.close()
    return tmp_path / "home"


SEGMENT = ["query", "segmentation", "-e", "Purchase"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--to", "9999-12-31"], ["end", "9999-12-30"]),
        (["--from", "2024-05-03", "--to", "2024-05-01"], ["end", "start"]),
        (["--from", "2000-01-01", "--interval", "hour"], ["buckets"]),
        (["--from", "1900-01-01", "--to", "2024-01-01", "--interval", "month"], ["start"]),
        (["--to", "2024-02-30"], ["end"]),
    ],
    ids=["end on the last day", "end before start", "too many hours", "before 1970", "no date"],
)
def test_the_cli_refuses_a_bad_range(
    home: Path, cli: Cli, args: list[str], words: list[str]
) -> None:
    before = store_state(home)
    assert_cli_refused(cli(*SEGMENT, *args), *words)
    assert store_state(home) == before


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("garbage.parquet", b"not parquet at all" * 10, ["garbage.parquet", "parquet"]),
        ("latin1.csv", b"event_type,user_id\nView,user-\xe9001\n", ["latin1.csv", "UTF8"]),
        ("header.csv", b"\xff\xfe\n", ["header.csv", "utf-8"]),
        ("events.xml", b"<events/>", ["format"]),
    ],
    ids=["corrupt parquet", "invalid UTF-8 in a CSV", "binary CSV header", "unknown format"],
)
def test_an_unreadable_import_file_is_refused_whole(
    home: Path, cli: Cli, tmp_path: Path, name: str, content: bytes, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    before = store_state(home)
    assert_cli_refused(cli("events", "import", str(path)), *words)
    assert store_state(home) == before


def test_import_of_a_missing_file_or_a_directory(home: Path, cli: Cli, tmp_path: Path) -> None:
    before = store_state(home)
    assert_cli_refused(cli("events", "import", str(tmp_path / "nope.jsonl")), "no file")
    assert_cli_refused(cli("events", "import", str(tmp_path)), "no file")
    assert store_state(home) == before


def test_import_rejects_the_bad_rows_with_reasons_and_keeps_the_rest(
    home: Path, cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        event(insert_id="ok-1"),
        with_raw("event_properties", nested(2000)),
        with_raw("revenue", "NaN"),
        event(event_type="x" * 5000),
        event(insert_id="ok-2"),
    ]
    path.write_text("\n".join(lines) + "\n")
    result = cli.json("events", "import", str(path))
    assert (result["imported"], result["rejected"]) == (2, 3)
    assert [(r["line"], r["reasons"][0].split(" ")[0]) for r in result["rejected_rows"]] == [
        (2, "event_properties"),
        (3, "revenue"),
        (4, "event_type"),
    ]
    assert "deeper than 32 levels" in result["rejected_rows"][0]["reasons"][0]
    user = cli.json("query", "user", "user-0001")
    assert user["event_count"] == 2 + 2  # two from the world, two imported
