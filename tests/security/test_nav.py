"""The top bar says who is logged in and with what role, and links each role to the people
pages it may open: Members for admins, Audit for admins and editors, Account for everyone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.team import Team
from tests.server.conftest import Served, serving

_HEADER = re.compile(r'<header class="topbar">(.*?)</header>', re.S)
_LINK = re.compile(r'<a href="([^"]+)"([^>]*)>([^<]+)</a>')
_WHO = re.compile(r'<span class="who">(.*?)</span>', re.S)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path / "home") as s:
        yield s


def top_bar(html: str) -> tuple[dict[str, str], str]:
    """The nav's links (label -> href, the current page's label marked with ``*``) and the
    text of the who-am-I span, tags removed."""
    header = _HEADER.search(html)
    assert header, html[:500]
    nav = header.group(1).split("</nav>")[0]
    links = {
        label.strip() + ("*" if "aria-current" in attrs else ""): href
        for href, attrs, label in _LINK.findall(nav)
    }
    who = _WHO.search(header.group(1))
    assert who, header.group(1)
    return links, " ".join(re.sub(r"<[^>]+>", "", who.group(1)).split())


PEOPLE = {"Members": "/members", "Audit": "/audit", "Account": "/account"}
SEES = {
    "admin": ["Members", "Audit", "Account"],
    "editor": ["Audit", "Account"],
    "viewer": ["Account"],
}


@pytest.mark.parametrize("role", ["admin", "editor", "viewer"])
def test_the_top_bar_names_the_user_and_role_and_links_what_the_role_may_open(
    served: Served, team: Team, role: str
) -> None:
    member = team(f"kim-{role}", role)
    html = member.ui.get("/").text
    links, who = top_bar(html)
    assert who == f"kim-{role} · {role}"
    name_link = re.search(r'<span class="who"><a href="([^"]+)"[^>]*>([^<]+)</a>', html)
    assert name_link and name_link.groups() == ("/account", f"kim-{role}")
    shown = {label: href for label, href in links.items() if label in PEOPLE}
    assert shown == {label: PEOPLE[label] for label in SEES[role]}
    # adding a source is a change: a viewer is not offered the page that would refuse them
    assert ("Add source" in links) == (role != "viewer"), links
    for label, href in PEOPLE.items():
        # every link shown opens; every link hidden would have been refused
        status = member.ui.get(href).status_code
        assert status == (200 if label in SEES[role] else 403), (label, status)


def test_the_current_people_page_is_marked_in_the_nav(served: Served) -> None:
    for href, label in (("/members", "Members"), ("/audit", "Audit"), ("/account", "Account")):
        links, who = top_bar(served.ui.get(href).text)
        assert links.get(f"{label}*") == href, links
        assert [name for name in links if name.endswith("*")] == [f"{label}*"]
        assert who == "admin · admin"


def test_the_login_page_shows_no_nav(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as anonymous:
        page = anonymous.get("/login").text
    assert "<h1>Log in</h1>" in page
    assert '<span class="who">' not in page and 'href="/account"' not in page
