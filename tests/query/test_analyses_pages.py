"""The /funnels, /retention and /cohorts pages as a browser without JavaScript sees them:
the forms build the query, the tables hold the numbers the application answers, and a
cohort is added, shown and deleted through forms and a confirmation page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from profilesync.app import analyses
from profilesync.store import open_store
from tests.query.test_analyses_api import make_home
from tests.server.conftest import Served, serving

RANGE = [("start", "2024-05-01"), ("end", "2024-05-07")]


class Tables(HTMLParser):
    """Each ``<table data-group=...>``'s rows as lists of cell texts, by group."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._group: str | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("data-group") is not None:
            self._group = dict(attrs)["data-group"]
            self.tables[self._group or ""] = []
        elif tag == "tr" and self._group is not None:
            self.tables[self._group].append([])
        elif tag in ("td", "th") and self._group is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._group = None
        elif tag in ("td", "th") and self._group is not None and self._cell is not None:
            self.tables[self._group][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def selected_steps(page: str) -> list[str]:
    """The event chosen in each step row of the funnel form ("" for none)."""
    rows = re.findall(r'<select id="step-\d+" name="step".*?</select>', page, re.S)
    return [(re.findall(r'<option value="([^"]*)" selected', r) or [""])[0] for r in rows]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path / "home")


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    with serving(home) as s:
        yield s


def funnel_page(served: Served, *params: tuple[str, str]) -> Any:
    return served.ui.get("/funnels", params=[*params, *RANGE])


def test_the_funnel_form_shows_each_step_in_a_table(served: Served) -> None:
    steps = [("step", "View"), ("step", "Cart"), ("step", "Buy")]
    page = funnel_page(served, *steps, ("window", "1"), ("unit", "h"))
    assert page.status_code == 200, page.text
    assert '<canvas id="chart"' in page.text and "/static/vendor/chart.umd.min.js" in page.text
    assert Tables(page.text).tables["All users"] == [
        ["Step", "Users", "Conversion", "From previous", "Drop-off", "Median time to convert"],
        ["1. View", "7", "100.0%", "100.0%", "0", "-"],
        ["2. Cart", "6", "85.7%", "85.7%", "1", "3 min"],
        ["3. Buy", "2", "28.6%", "33.3%", "4", "10 min"],
    ]
    assert selected_steps(page.text) == ["View", "Cart", "Buy"]


def test_a_grouped_funnel_has_a_table_per_group_as_the_api_answers(served: Served) -> None:
    params = [("step", "View"), ("step", "Buy"), ("window", "2"), ("unit", "h"),
              ("order", "any"), ("group_by", "profile:Title")]  # fmt: skip
    page = funnel_page(served, *params)
    api = served.api.post(
        "/api/query/funnel",
        json={"steps": ["View", "Buy"], "window": "2h", "order": "any",
              "group_by": {"kind": "profile", "name": "Title"}, "start": "2024-05-01",
              "end": "2024-05-07"},
    ).json()  # fmt: skip
    tables = Tables(page.text).tables
    assert list(tables) == ["All users"] + [g["label"] for g in api["groups"]]
    for group in api["groups"]:
        shown = [row[1] for row in tables[group["label"]][1:]]
        assert shown == [str(s["users"]) for s in group["steps"]]
    assert '<option value="profile:Title" selected>' in page.text


def test_steps_are_added_and_removed_without_javascript(served: Served) -> None:
    added = served.ui.get("/funnels", params=[("step", "View"), ("step", "Cart"),
                                              ("action", "add_step")])  # fmt: skip
    assert selected_steps(added.text) == ["View", "Cart", ""]
    assert "funnel-table" not in added.text  # editing the form runs nothing yet
    removed = served.ui.get("/funnels", params=[("step", "View"), ("step", "Cart"),
                                                ("step", "Buy"), ("action", "remove_step:0")])  # fmt: skip
    assert selected_steps(removed.text) == ["Cart", "Buy"]
    assert 'value="remove_step:' not in removed.text  # two steps is the least a funnel has


def test_a_funnel_with_one_step_or_a_bad_window_says_why(served: Served) -> None:
    one = funnel_page(served, ("step", "View"), ("step", ""))
    assert one.status_code == 422
    assert "a funnel needs at least two steps" in one.text and "funnel-table" not in one.text
    zero = funnel_page(served, ("step", "View"), ("step", "Buy"), ("window", "0"))
    assert zero.status_code == 422 and "window &#39;0d&#39; must be more than 0" in zero.text


def test_retention_grouped_by_a_profile_property_tabulates_every_cohort(
    served: Served, home: Path
) -> None:
    params = [("start_event", "View"), ("return_event", "Cart"), ("buckets", "2"),
              ("group_by", "profile:Title"), *RANGE]  # fmt: skip
    page = served.ui.get("/retention", params=params)
    assert page.status_code == 200, page.text
    api = served.api.post(
        "/api/query/retention",
        json={"start_event": "View", "return_event": "Cart", "buckets": 2,
              "group_by": {"kind": "profile", "name": "Title"}, "start": "2024-05-01",
              "end": "2024-05-07"},
    ).json()  # fmt: skip
    tables = Tables(page.text).tables
    assert list(tables) == ["All users"] + [g["label"] for g in api["groups"]]
    assert tables["All users"][0] == ["Start", "Users", "Day 0", "Day 1", "Day 2"]
    assert tables["All users"][2] == ["2024-05-01", "7", "85.7% 6", "0.0% 0", "0.0% 0"]
    managers = next(g for g in api["groups"] if g["label"] == "Manager")["cohorts"][0]
    assert tables["Manager"][2][:3] == [
        "2024-05-01", str(managers["users"]), f"{managers['rates'][0]:.1%} {managers['returned'][0]}",
    ]  # fmt: skip
    assert '<canvas id="chart"' in page.text


def test_retention_needs_both_events(served: Served) -> None:
    page = served.ui.get("/retention", params=[("start_event", "View"), ("return_event", "")])
    assert page.status_code == 422 and "needs a start event and a return event" in page.text


def test_a_cohort_is_added_shown_used_and_deleted_through_forms(served: Served, home: Path) -> None:
    empty = served.ui.get("/cohorts")
    assert "No cohorts yet" in empty.text
    form = {
        "name": "managers",
        "cond_prop": ["profile:Title", "", ""], "cond_op": ["is", "is", "is"],
        "cond_value": ["Manager", "", ""],
        "did": ["did", "did_not"], "did_event": ["View", ""], "did_times": ["1", "1"],
        "did_days": ["3660", "30"],
    }  # fmt: skip
    saved = served.ui.post("/cohorts", data=form)
    assert saved.status_code == 303 and saved.headers["location"] == "/cohorts/managers?done=saved"
    page = served.ui.get(saved.headers["location"])
    assert "Cohort saved" in page.text
    assert re.search(r'id="cohort-size">3<', page.text)
    assert re.findall(r'class="mono">([^<]+)<', page.text) == ["u3", "u4", "u6"]
    assert "Title is Manager" in page.text and "did View &gt;= 1 in 3660d" in page.text
    assert 'href="/api/cohorts/managers/export?format=csv"' in page.text
    export = served.ui.get("/api/cohorts/managers/export", params={"format": "csv"})
    assert export.text == "user_id\nu3\nu4\nu6\n"  # the page's link works with the session
    with open_store(home) as opened:
        assert analyses.cohort_show(opened, "managers")["size"] == 3

    listed = served.ui.get("/cohorts").text
    assert re.search(r'data-cohort="managers">.*?data-size>3<', listed, re.S)

    used = funnel_page(served, ("step", "View"), ("step", "Buy"), ("window", "2"), ("unit", "h"),
                       ("filter_prop", "cohort:managers"), ("filter_op", "is"), ("filter_value", ""))  # fmt: skip
    assert [row[1] for row in Tables(used.text).tables["All users"][1:]] == ["3", "2"]
    assert '<option value="cohort:managers" selected>' in used.text

    confirm = served.ui.get("/cohorts/managers/delete")
    assert "Delete cohort managers?" in confirm.text
    assert '<form method="post" action="/cohorts/managers/delete">' in confirm.text
    gone = served.ui.post("/cohorts/managers/delete")
    assert gone.status_code == 303 and gone.headers["location"] == "/cohorts?done=deleted"
    after = served.ui.get(gone.headers["location"])
    assert "Cohort deleted." in after.text and "No cohorts yet" in after.text
    assert served.ui.get("/cohorts/managers").status_code == 404


def test_a_cohort_without_a_condition_is_refused_and_the_form_kept(served: Served) -> None:
    page = served.ui.post("/cohorts", data={"name": "nobody", "cond_prop": [""],
                                            "cond_op": ["is"], "cond_value": [""]})  # fmt: skip
    assert page.status_code == 422
    assert "a cohort needs a condition" in page.text and 'value="nobody"' in page.text
    taken = served.ui.post("/cohorts", data={"name": "", "cond_prop": ["profile:Title"],
                                             "cond_op": ["is"], "cond_value": ["Manager"]})  # fmt: skip
    assert taken.status_code == 422 and "a cohort needs a name" in taken.text


def test_the_pages_are_in_the_navigation(served: Served) -> None:
    page = served.ui.get("/usage").text
    for href in ("/funnels", "/retention", "/cohorts"):
        assert f'<a href="{href}"' in page
