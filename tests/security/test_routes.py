"""Every route of ``profilesync serve`` is protected, found from ``app.routes``.

The routes are enumerated from the running app, so a route added tomorrow is checked the
day it is added; only :data:`PUBLIC` is open, each with its reason. Checked over real
HTTP: strangers are refused (401 JSON for the API, a redirect to the login for pages),
every response carries the anti-framing / CSP / nosniff headers, a session cookie sent
from another site's page changes nothing, and failed logins are rate-limited.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from profilesync.server.app import MACHINE_PATHS
from profilesync.server.auth import SESSION_COOKIE
from tests.server.conftest import PASSWORD, Served, serving

#: the only routes open without a login or a token, and why
PUBLIC = {
    "/health": "liveness probe for load balancers and process managers",
    "/login": "the login form and its post: the way in (rate-limited)",
    "/static": "the pages' stylesheet, script and icons: nothing private",
    "/docs-assets": "Swagger UI's files; the /docs page itself needs a login",
    "/2/httpapi": "event ingestion, authenticated by a project API key in the body and "
    "posted to from other sites by browser SDKs",
    "/batch": "bulk event ingestion (Amplitude's Batch API), authenticated like /2/httpapi",
    "/identify": "user property updates (Amplitude's Identify API), authenticated like /2/httpapi",
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
EVIL = "https://evil.example"


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str

    @property
    def path(self) -> str:
        """The route with every path parameter filled (``1`` fits names and ids alike)."""
        return re.sub(r"\{[^}]+\}", "1", self.template)

    @property
    def is_api(self) -> bool:
        return self.template.startswith("/api/") or self.template in MACHINE_PATHS

    @property
    def public(self) -> bool:
        return is_public(self.template)


def is_public(template: str) -> bool:
    return any(template == p or template.startswith(p + "/") for p in PUBLIC)


def endpoints(served: Served) -> list[Endpoint]:
    found = [
        Endpoint(method, route.path)
        for route in iter_route_contexts(served.app.routes)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert len(found) > 40, found  # the enumeration sees the included routers
    return found


def private(served: Served) -> list[Endpoint]:
    return [e for e in endpoints(served) if not e.public]


def cookie_changing(served: Served) -> list[Endpoint]:
    """State-changing routes a browser could reach with the session cookie."""
    return [e for e in private(served) if e.method in UNSAFE]


def assert_protective_headers(resp: httpx.Response) -> None:
    where = f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}"
    assert resp.headers.get("x-frame-options") == "DENY", where
    csp = resp.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, where
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, where
    assert resp.headers.get("x-content-type-options") == "nosniff", where
    assert resp.headers.get("referrer-policy") == "same-origin", where


def client(served: Served, **options: object) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=30, **options)  # type: ignore[arg-type]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def test_the_public_allow_list_names_real_routes(served: Served) -> None:
    templates = {route.path for route in iter_route_contexts(served.app.routes)}
    for path in PUBLIC:
        assert path in templates, f"{path} is allowed public but no longer exists"


def test_every_private_route_refuses_strangers(served: Served) -> None:
    with client(served) as closed:  # a session that was real, then logged out
        served.login(closed)
        stale = closed.cookies[SESSION_COOKIE]
        closed.post("/logout")
    strangers = {
        "no credentials": client(served),
        "wrong bearer token": client(served, headers={"Authorization": "Bearer ps_wrong"}),
        "forged cookie": client(served, cookies={SESSION_COOKIE: "forged-session-id"}),
        "logged-out cookie": client(served, cookies={SESSION_COOKIE: stale}),
    }
    checked = 0
    for endpoint in private(served):
        for who, stranger in strangers.items():
            resp = stranger.request(endpoint.method, endpoint.path)
            where = f"{who}: {endpoint.method} {endpoint.path} -> {resp.status_code}"
            assert_protective_headers(resp)
            if endpoint.is_api:
                assert resp.status_code == 401, where
                assert resp.json()["code"] == "unauthorized", where
                assert resp.headers["www-authenticate"] == "Bearer", where
            else:
                assert resp.status_code == 303, where
                assert resp.headers["location"].startswith("/login"), where
            checked += 1
    for stranger in strangers.values():
        stranger.close()
    assert checked >= 4 * 50


def test_every_response_carries_the_protective_headers(served: Served) -> None:
    seen: list[httpx.Response] = []
    with client(served) as anonymous:
        seen += [
            anonymous.get("/health"),
            anonymous.get("/login"),
            anonymous.post("/login", data={"username": "admin", "password": "wrong-one"}),
            anonymous.get("/static/style.css"),
            anonymous.get("/static/app.js"),
            anonymous.get("/docs-assets/swagger-ui-bundle.js"),
            anonymous.get("/no/such/page"),
            anonymous.get("/api/no/such/endpoint"),
            anonymous.post("/2/httpapi", json={"api_key": "nope", "events": []}),
            anonymous.options(
                "/2/httpapi",
                headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
            ),
        ]
    readable = [e for e in endpoints(served) if e.method == "GET" and "{" not in e.template]
    for endpoint in readable:
        seen.append((served.api if endpoint.is_api else served.ui).get(endpoint.path))
    for resp in seen:
        assert_protective_headers(resp)
    assert {r.status_code for r in seen} >= {200, 401, 404}


def test_inline_scripts_carry_the_response_nonce(served: Served) -> None:
    """The CSP allows only scripts from this site or with the response's nonce: the pages'
    own script tags and Swagger UI's start-up script carry it, fresh each response."""
    nonces = []
    for path in ("/", "/docs"):
        resp = served.ui.get(path)
        assert resp.status_code == 200
        nonce = re.search(r"'nonce-([^']+)'", resp.headers["content-security-policy"])
        assert nonce, resp.headers["content-security-policy"]
        inline = [t for t in re.findall(r"<script\b[^>]*>", resp.text) if "src=" not in t]
        assert all(f'nonce="{nonce.group(1)}"' in t for t in inline), inline
        nonces.append((nonce.group(1), len(inline)))
    assert nonces[0][0] != nonces[1][0] and nonces[1][1] >= 1  # Swagger UI's start-up


def test_cookie_authenticated_changes_from_other_sites_are_refused(served: Served) -> None:
    routes = cookie_changing(served)
    assert any(e.template == "/logout" for e in routes)
    for endpoint in routes:
        if endpoint.template == "/logout":
            continue  # checked below with its own session
        for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/page"}, {"Origin": "null"}):
            resp = served.ui.request(endpoint.method, endpoint.path, headers=headers)
            where = f"{endpoint.method} {endpoint.path} {headers} -> {resp.status_code}"
            assert resp.status_code == 403, where
            assert_protective_headers(resp)
            if endpoint.is_api:
                assert resp.json()["code"] == "forbidden" and resp.json()["message"], where
            else:
                assert resp.headers["content-type"].startswith("text/html"), where
                assert "cross-site" in resp.text, where
        for headers in ({"Origin": served.url}, {"Referer": f"{served.url}/"}, {}):
            resp = served.ui.request(endpoint.method, endpoint.path, headers=headers)
            where = f"{endpoint.method} {endpoint.path} {headers} -> {resp.status_code}"
            assert resp.status_code not in (401, 403), where
            assert not resp.headers.get("location", "").startswith("/login"), where


def test_logout_and_login_refuse_other_sites(served: Served) -> None:
    with client(served) as browser:
        served.login(browser)
        refused = browser.post("/logout", headers={"Origin": EVIL})
        assert refused.status_code == 403 and "cross-site" in refused.text
        assert browser.get("/usage").status_code == 200  # still logged in
        done = browser.post("/logout", headers={"Origin": served.url})
        assert done.status_code == 303 and done.headers["location"] == "/login"
        assert browser.get("/usage").status_code == 303
    with client(served) as browser:
        form = {"username": "admin", "password": PASSWORD, "next": "/"}
        forced = browser.post("/login", data=form, headers={"Origin": EVIL})
        assert forced.status_code == 403 and SESSION_COOKIE not in forced.cookies


def test_token_calls_and_event_ingestion_stay_usable_cross_site(served: Served) -> None:
    """A bearer token is not something a browser sends on its own: no site check."""
    resp = served.api.post("/api/sources/nosuch/pause", headers={"Origin": EVIL})
    assert resp.status_code == 404, resp.text
    sent = served.ui.post(
        "/2/httpapi", json={"api_key": "nope", "events": []}, headers={"Origin": EVIL}
    )
    assert sent.status_code in (400, 401) and "api_key" in sent.text.lower()
    assert sent.headers["access-control-allow-origin"] == "*"


def test_failed_logins_are_rate_limited(served: Served) -> None:
    wrong = {"username": "admin", "password": "not-the-password", "next": "/"}
    right = {**wrong, "password": PASSWORD}
    throttle = served.app.state.auth.throttle
    with client(served) as guesser:
        for _ in range(throttle.limit):
            assert guesser.post("/login", data=wrong).status_code == 401
        sixth = guesser.post("/login", data=wrong)
        assert sixth.status_code == 429
        assert 0 < int(sixth.headers["retry-after"]) <= throttle.window
        assert "Too many failed logins" in sixth.text and "Try again in 5 minutes" in sixth.text
        assert_protective_headers(sixth)
        # the right password is refused too until the window passes: no free oracle
        blocked = guesser.post("/login", data=right)
        assert blocked.status_code == 429 and SESSION_COOKIE not in blocked.cookies
        # per address: another user name from here; per user name: admin from elsewhere
        other_user = guesser.post("/login", data={**wrong, "username": "root"})
        assert other_user.status_code == 429
    elsewhere = client(served, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with elsewhere:
        assert elsewhere.post("/login", data=right).status_code == 429
        fresh = elsewhere.post("/login", data={**right, "username": "someone"})
        assert fresh.status_code == 401  # neither this address nor that name is blocked
    throttle.clock = lambda: time.monotonic() + throttle.window + 1  # the window has passed
    with client(served) as person:
        assert person.post("/login", data=right).status_code == 303
        # a success clears the count: the next mistake is an ordinary 401
        assert person.post("/login", data=wrong).status_code == 401
