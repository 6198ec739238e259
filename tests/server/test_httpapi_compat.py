"""What real Amplitude clients rely on, spoken over the wire to a real server: the answer
to a wrong key, a readable 413, dedup on device_id + insert_id.

Each test sends what an SDK sends (JSON bodies over HTTP, or raw bytes on a socket where
the connection itself is the point) and asserts what the SDK would read back.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from profilesync.events import projects
from profilesync.store import DuckDBStore
from tests.events.conftest import Served, ms, serving


@pytest.fixture
def key(tmp_path: Path) -> str:
    """A home with a project ``web``; its API key."""
    with DuckDBStore(tmp_path / "home") as store:
        _, api_key = projects.create_project(store, "web")
    return api_key


@pytest.fixture
def served(tmp_path: Path, key: str) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def view(i: int, **extra: Any) -> dict[str, Any]:
    return {"event_type": "View", "user_id": f"user-{i:05d}", "time": ms(1) + i, **extra}


def rows(served: Served, sql: str) -> list[tuple[Any, ...]]:
    with served.app.state.store_lock:
        return served.app.state.store.con.execute(sql).fetchall()


# -- 1. a wrong api_key --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
def test_a_wrong_key_is_amplitudes_400(served: Served, key: str, path: str) -> None:
    resp = served.anon.post(path, json={"api_key": "not-a-key", "events": [view(1)]})
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 400
    # the SDKs stop retrying a batch only on this exact text
    assert body["error"] == "Invalid API key: not-a-key"
    assert "rotate-key" in body["hint"]
    assert rows(served, "SELECT count(*) FROM events") == [(0,)]
    good = served.anon.post(path, json={"api_key": key, "events": [view(1)]})
    assert good.status_code == 200, good.text


# -- 2. a readable 413 ----------------------------------------------------------------------


def post_raw(url: str, path: str, body: bytes, chunk: int = 65_536) -> tuple[int, dict[str, Any]]:
    """POST ``body`` over a plain socket, all of it, as a client that does not look at the
    answer before it has sent everything; the status and JSON it then reads.

    A server that answers early and closes makes ``sendall`` or ``recv`` fail with a reset:
    that is what the SDKs saw (and took for a network error to retry unchanged)."""
    parts = urlsplit(url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head)
        for start in range(0, len(body), chunk):
            sock.sendall(body[start : start + chunk])
        answer = b""
        while data := sock.recv(65_536):
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload)


@pytest.mark.parametrize("megabytes", [1.2, 4, 8])
def test_a_body_over_1_mb_gets_a_413_the_client_can_read(
    served: Served, key: str, megabytes: float
) -> None:
    size = int(megabytes * 1_048_576)
    blob = "x" * 1000
    events = [view(i, event_properties={"blob": blob}) for i in range(size // 1050)]
    body = json.dumps({"api_key": key, "events": events}).encode()
    assert len(body) > 1_048_576
    status, answer = post_raw(served.url, "/2/httpapi", body)
    assert status == 413
    assert answer["code"] == 413 and "1 MB" in answer["error"]
    assert rows(served, "SELECT count(*) FROM events") == [(0,)]
    # the server is fine afterwards
    ok = served.anon.post("/2/httpapi", json={"api_key": key, "events": [view(1)]})
    assert ok.status_code == 200, ok.text


def test_a_body_far_past_the_limit_is_cut_off_without_hanging(served: Served, key: str) -> None:
    """Past the read-and-drop cap (20 MB) the server stops reading: the client may see a
    reset, but the server answers other clients at once."""
    parts = urlsplit(served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /2/httpapi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n"
        )
        started = time.monotonic()
        try:
            for _ in range(1600):  # up to 100 MB, as fast as the server reads
                sock.sendall(b" " * 65_536)
        except OSError:
            pass
        assert time.monotonic() - started < 30
    ok = served.anon.post("/2/httpapi", json={"api_key": key, "events": [view(1)]})
    assert ok.status_code == 200, ok.text


# -- 3. dedup on device_id + insert_id ------------------------------------------------------


def test_one_insert_id_from_two_devices_keeps_both_events(served: Served, key: str) -> None:
    def sent(device: str | None, kind: str = "View") -> dict[str, Any]:
        doc = {"event_type": kind, "user_id": "user-00001", "insert_id": "same-id", "time": ms(1)}
        return {**doc, "device_id": device} if device else doc

    first = [sent("phone-0001"), sent("laptop-001"), sent(None)]
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": first})
    assert resp.status_code == 200 and resp.json()["events_deduplicated"] == 0
    # a retry of each, and a copy inside one batch: all dropped
    again = [*first, sent("phone-0001", "Other")]
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": again})
    assert resp.json()["events_deduplicated"] == 4
    assert rows(served, "SELECT device_id, event_type FROM events ORDER BY 1 NULLS LAST") == [
        ("laptop-001", "View"),
        ("phone-0001", "View"),
        (None, "View"),
    ]


def test_dedup_by_device_holds_after_a_restart(tmp_path: Path, key: str) -> None:
    """A new process rebuilds its dedup index from the stored events, devices included."""
    from profilesync.events import dedup

    doc = {"event_type": "View", "device_id": "phone-0001", "insert_id": "i-1", "time": ms(1)}
    with serving(tmp_path / "home") as s:
        assert s.anon.post("/2/httpapi", json={"api_key": key, "events": [doc]}).status_code == 200
    dedup._indexes.clear()  # what a new process starts with
    with serving(tmp_path / "home") as s:
        other = {**doc, "device_id": "laptop-001"}
        resp = s.anon.post("/2/httpapi", json={"api_key": key, "events": [doc, other]})
        assert resp.json()["events_deduplicated"] == 1
        assert rows(s, "SELECT device_id FROM events ORDER BY 1") == [
            ("laptop-001",),
            ("phone-0001",),
        ]


# -- 5. /batch and /identify ------------------------------------------------------------------


def test_batch_takes_bodies_past_1_mb_and_answers_like_amplitude(served: Served, key: str) -> None:
    events = [view(i, insert_id=f"b-{i}", event_properties={"s": "x" * 500}) for i in range(3000)]
    body = json.dumps({"api_key": key, "events": events}).encode()
    assert len(body) > 1_048_576  # over /2/httpapi's limits (size and count)
    assert served.anon.post("/2/httpapi", content=body).status_code == 413
    resp = served.anon.post("/batch", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["code"] == 200 and answer["events_ingested"] == 3000
    assert answer["payload_size_bytes"] == len(body)
    assert abs(answer["server_upload_time"] - time.time() * 1000) < 60_000
    assert rows(served, "SELECT count(DISTINCT insert_id) FROM events") == [(3000,)]
    again = served.anon.post("/batch", content=body).json()  # a retry: stored once
    assert again["events_deduplicated"] == 3000
    assert rows(served, "SELECT count(*) FROM events") == [(3000,)]


def test_batch_over_20_mb_gets_a_readable_413(served: Served, key: str) -> None:
    blob = "x" * 10_000
    events = [view(i, event_properties={"blob": blob}) for i in range(2_150)]
    body = json.dumps({"api_key": key, "events": events}).encode()
    assert len(body) > 20 * 1_048_576
    status, answer = post_raw(served.url, "/batch", body, chunk=1 << 20)
    assert status == 413 and "20 MB" in answer["error"]
    assert rows(served, "SELECT count(*) FROM events") == [(0,)]


def test_identify_takes_form_fields_one_or_a_list(served: Served, key: str) -> None:
    one = {"user_id": "user-00001", "user_properties": {"$set": {"plan": "pro"}}}
    resp = served.anon.post("/identify", data={"api_key": key, "identification": json.dumps(one)})
    assert resp.status_code == 200 and resp.text == "success"
    many = [
        {"user_id": "user-00002", "user_properties": {"plan": "free"}},
        {"device_id": "device-0003", "user_properties": {"$set": {"plan": "team"}}},
    ]
    resp = served.anon.post(
        "/identify", files={"api_key": (None, key), "identification": (None, json.dumps(many))}
    )
    assert resp.status_code == 200 and resp.text == "success"
    assert rows(served, "SELECT event_type, coalesce(user_id, device_id) FROM events") == [
        ("$identify", "user-00001"),
        ("$identify", "user-00002"),
        ("$identify", "device-0003"),
    ]


def test_identify_refusals_name_the_field(served: Served, key: str) -> None:
    def send(**form: str) -> Any:
        return served.anon.post("/identify", data=form)

    missing = send(api_key=key)
    assert missing.status_code == 400 and missing.json()["missing_field"] == "identification"
    assert send(api_key=key, identification="{not json").status_code == 400
    no_id = send(api_key=key, identification=json.dumps({"user_properties": {"a": 1}}))
    assert no_id.status_code == 400 and no_id.json()["events_with_missing_fields"] == {
        "user_id": [0]
    }
    wrong = send(api_key="nope", identification=json.dumps({"user_id": "user-00001"}))
    assert wrong.status_code == 400 and wrong.json()["error"] == "Invalid API key: nope"
    assert rows(served, "SELECT count(*) FROM events") == [(0,)]


# -- 6. $identify, $groupidentify and user property operations -----------------------------


def segmentation(served: Served, **query: Any) -> list[int]:
    body = {"events": ["View"], "start": "2024-05-01", "end": "2024-05-01", **query}
    resp = served.api.post("/api/query/segmentation", json=body)
    assert resp.status_code == 200, resp.text
    return [int(sum(s["values"])) for s in resp.json()["series"]]


def pro_filter() -> dict[str, Any]:
    return {"filters": [{"kind": "user", "name": "plan", "op": "is", "values": ["pro"]}]}


def test_a_later_event_carries_what_an_identify_set(served: Served, key: str) -> None:
    def send(*events: dict[str, Any]) -> None:
        resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": list(events)})
        assert resp.status_code == 200, resp.text

    send(view(1), view(2))
    identify = {"event_type": "$identify", "user_id": "user-00001", "insert_id": "id-1"}
    send({**identify, "user_properties": {"$set": {"plan": "pro"}, "$add": {"logins": 1}}})
    send(view(1), view(1), view(2))
    assert segmentation(served) == [5]
    assert segmentation(served, **pro_filter()) == [2]  # not the one sent before it
    # through the Identify API, with a plain value (a $set) and an $unset
    form = {"user_id": "user-00002", "user_properties": {"plan": "pro"}}
    resp = served.anon.post("/identify", data={"api_key": key, "identification": json.dumps(form)})
    assert resp.text == "success"
    unset = {"user_id": "user-00001", "user_properties": {"$unset": {"plan": "-"}}}
    served.anon.post("/identify", data={"api_key": key, "identification": json.dumps(unset)})
    send(view(1), view(2))
    assert segmentation(served, **pro_filter()) == [3]  # user-00002's last view only
    last = "SELECT user_id, user_properties FROM events ORDER BY batch_id DESC, 1 LIMIT 2"
    assert [(u, json.loads(p)) for u, p in rows(served, last)] == [
        ("user-00001", {"logins": 1}),
        ("user-00002", {"plan": "pro"}),
    ]


def test_a_retried_identify_applies_its_operations_once(served: Served, key: str) -> None:
    add = {
        "event_type": "$identify",
        "device_id": "phone-0001",
        "insert_id": "add-1",
        "user_properties": {"$add": {"credits": 5}, "$append": {"seen": "x"}},
    }
    for _ in range(3):  # the answer was lost twice
        served.anon.post("/2/httpapi", json={"api_key": key, "events": [add]})
    event = {"event_type": "View", "device_id": "phone-0001", "time": ms(1)}
    served.anon.post("/2/httpapi", json={"api_key": key, "events": [event]})
    last = rows(served, "SELECT user_properties FROM events WHERE event_type = 'View'")
    assert json.loads(last[0][0]) == {"credits": 5, "seen": ["x"]}


def test_groupidentify_needs_no_user_and_keeps_groups(served: Served, key: str) -> None:
    def group(ops: dict[str, Any], insert_id: str) -> dict[str, Any]:
        return {
            "event_type": "$groupidentify",
            "groups": {"company": "acme"},
            "group_properties": ops,
            "insert_id": insert_id,
        }

    first = group({"$set": {"size": 10, "tier": "gold"}}, "g-1")
    second = group({"$add": {"size": 5}, "$unset": {"tier": "-"}}, "g-2")
    event = view(1, groups={"company": ["acme", "initech"]})
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": [first, second, event]})
    assert resp.status_code == 200, resp.text
    assert rows(served, "SELECT event_type, groups, group_properties FROM events") == [
        ("$groupidentify", '{"company":"acme"}', '{"size":10,"tier":"gold"}'),
        ("$groupidentify", '{"company":"acme"}', '{"size":15}'),
        ("View", '{"company":["acme","initech"]}', None),
    ]
    no_groups = {"event_type": "$groupidentify", "group_properties": {"$set": {"a": 1}}}
    refused = served.anon.post("/2/httpapi", json={"api_key": key, "events": [no_groups]})
    assert refused.status_code == 400
    assert refused.json()["events_with_missing_fields"] == {"groups": [0]}


def test_an_operation_that_is_not_an_object_is_refused(served: Served, key: str) -> None:
    bad = view(1, user_properties={"$set": "pro"})
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": [view(2), bad]})
    assert resp.status_code == 400
    assert resp.json()["events_with_invalid_fields"] == {"user_properties": [1]}


def test_user_properties_survive_a_restart(tmp_path: Path, key: str) -> None:
    from profilesync.events import dedup, userprops

    identify = {"event_type": "$identify", "user_id": "user-00001"}
    with serving(tmp_path / "home") as s:
        ops = {"$set": {"plan": "pro"}, "$add": {"n": 1}}
        s.anon.post(
            "/2/httpapi", json={"api_key": key, "events": [{**identify, "user_properties": ops}]}
        )
    dedup._indexes.clear()  # what a new process starts with
    userprops._states.clear()
    with serving(tmp_path / "home") as s:
        again = {**identify, "user_properties": {"$add": {"n": 1}}}
        s.anon.post("/2/httpapi", json={"api_key": key, "events": [again, view(1)]})
        assert segmentation(s, **pro_filter()) == [1]
        last = rows(s, "SELECT user_properties FROM events WHERE event_type = 'View'")
        assert json.loads(last[0][0]) == {"plan": "pro", "n": 2}


# -- 7. revenue -----------------------------------------------------------------------------


def test_revenue_is_price_times_quantity_and_sums_in_a_segmentation(
    served: Served, key: str
) -> None:
    def buy(i: int, **fields: Any) -> dict[str, Any]:
        return {"event_type": "Buy", "user_id": f"user-{i:05d}", "time": ms(1), **fields}

    events = [
        buy(1, price=9.5, quantity=2, productId="sku-1", revenueType="purchase", currency="EUR"),
        buy(2, price=3),  # quantity defaults to 1
        buy(3, revenue=4.25),  # no price: the revenue sent
        buy(4, price=2, quantity=3, revenue=100),  # price * quantity wins, as in Amplitude
        # the SDKs' revenue helpers: $-prefixed event properties
        buy(5, event_properties={"$price": 2.5, "$quantity": 4, "$productId": "sku-2"}),
        buy(6, event_properties={"$revenue": 1.5, "$revenueType": "refund"}),
    ]
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": events})
    assert resp.status_code == 200, resp.text
    assert rows(
        served,
        'SELECT revenue, price, quantity, "productId", "revenueType", currency FROM events '
        "ORDER BY user_id",
    ) == [
        (19.0, 9.5, 2, "sku-1", "purchase", "EUR"),
        (3.0, 3.0, None, None, None, None),
        (4.25, None, None, None, None, None),
        (6.0, 2.0, 3, None, None, None),
        (10.0, 2.5, 4, "sku-2", None, None),
        (1.5, None, None, None, "refund", None),
    ]
    query = {
        "events": ["Buy"],
        "metric": "sum",
        "property": {"kind": "field", "name": "revenue"},
        "start": "2024-05-01",
        "end": "2024-05-01",
    }
    result = served.api.post("/api/query/segmentation", json=query)
    assert result.status_code == 200, result.text
    assert result.json()["series"][0]["values"] == [43.75]
    by_product = {**query, "group_by": {"kind": "field", "name": "productId"}}
    series = served.api.post("/api/query/segmentation", json=by_product).json()["series"]
    assert {s["label"]: s["values"] for s in series}["sku-1"] == [19.0]


# -- 8. every documented field ----------------------------------------------------------------

#: one event with every key of Amplitude's HTTP V2 event documentation, as an SDK sends it
EVERY_FIELD: dict[str, Any] = {
    "event_type": "Purchase",
    "user_id": "user-00001",
    "device_id": "C8F9E604-F01A-4BD9-95C6-8E5357DF265D",
    "time": ms(1),
    "event_properties": {"load_time": 0.8371, "dates": ["monday", "tuesday"]},
    "user_properties": {"age": 25, "interests": ["chess"]},
    "groups": {"team_id": "1", "company_name": ["Amplitude", "DataMonster"]},
    "group_properties": {"industry": "analytics"},
    "app_version": "2.1.3",
    "platform": "iOS",
    "os_name": "Android",
    "os_version": "4.2.2",
    "device_brand": "Verizon",
    "device_manufacturer": "Apple",
    "device_model": "iPhone 9,1",
    "carrier": "Verizon",
    "country": "United States",
    "region": "California",
    "city": "San Francisco",
    "dma": "San Francisco-Oakland-San Jose, CA",
    "language": "English",
    "price": 4.99,
    "quantity": 3,
    "revenue": 1.5,  # price * quantity wins
    "productId": "Google Pay Store Product Id",
    "revenueType": "Refund",
    "currency": "USD",
    "location_lat": 37.77,
    "location_lng": -122.39,
    "ip": "127.0.0.1",
    "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239",
    "idfv": "BCCE52E7-03EE-321A-B3D4-E57123966239",
    "adid": "AEBE52E7-03EE-455A-B3C4-E57283966239",
    "android_id": "BCCE52E7-03EE-321A-B3D4-E57123966239",
    "android_app_set_id": "C4A1C2DD-2C2C-4C7B-9A2E-0F1E5E2F3A4B",
    "event_id": 23,
    "session_id": 1396381378123,
    "insert_id": "5f0adeff-6668-4427-8d02-57d803a2b841",
    "library": "amplitude-python/1.3.0",
    "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
    "partner_id": "partner-1",
    "version_name": "2.1.3 (beta)",
    "plan": {"branch": "main", "source": "web", "version": "1.0.0", "versionId": "9ec23ba0"},
    "ingestion_metadata": {"source_name": "ampli", "source_version": "2.0.0"},
    "$skip_user_properties_sync": False,
}


def test_every_documented_field_is_stored_and_queryable(served: Served, key: str) -> None:
    from profilesync.events.fields import SPEC, STANDARD_FIELDS

    assert {f.key for f in SPEC} == set(EVERY_FIELD)  # the list above is the whole spec
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": [EVERY_FIELD]})
    assert resp.status_code == 200, resp.text
    names = [f.name for f in SPEC]
    with served.app.state.store_lock:
        cur = served.app.state.store.con.execute(
            f"SELECT {', '.join(json.dumps(n) for n in names)} FROM events"
        )
        stored = dict(zip(names, cur.fetchone() or (), strict=True))
    expected = {f.name: EVERY_FIELD[f.key] for f in SPEC}
    expected["time"] = datetime(2024, 5, 1, 12)
    expected["revenue"] = 4.99 * 3
    for f in SPEC:
        value = stored[f.name]
        if f.kind == "object":
            value = json.loads(value)
        assert (
            value == pytest.approx(expected[f.name])
            if f.kind == "double"
            else value == expected[f.name]
        ), f.name
    # and each can be queried as field:<name>
    for name in STANDARD_FIELDS:
        query = {
            "events": ["Purchase"],
            "start": "2024-05-01",
            "end": "2024-05-01",
            "filters": [{"kind": "field", "name": name, "op": "is set"}],
        }
        result = served.api.post("/api/query/segmentation", json=query)
        assert result.status_code == 200, (name, result.text)
        assert result.json()["series"][0]["values"] == [1], name


def test_ip_remote_is_the_senders_address(served: Served, key: str) -> None:
    resp = served.anon.post("/2/httpapi", json={"api_key": key, "events": [view(1, ip="$remote")]})
    assert resp.status_code == 200
    assert rows(served, "SELECT ip FROM events") == [("127.0.0.1",)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("location_lat", "north"),
        ("event_id", 1.5),
        ("plan", "main"),
        ("ingestion_metadata", ["ampli"]),
        ("os_version", {"major": 4}),
        ("$skip_user_properties_sync", "yes"),
        ("quantity", "three"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_by_name(
    served: Served, key: str, field: str, value: Any
) -> None:
    resp = served.anon.post(
        "/2/httpapi", json={"api_key": key, "events": [view(1, **{field: value})]}
    )
    assert resp.status_code == 400
    problems = resp.json()["invalid_events"]
    named = field.lstrip("$")
    assert [(p["index"], p["field"]) for p in problems] == [(0, named)], problems
    assert named in problems[0]["message"]
