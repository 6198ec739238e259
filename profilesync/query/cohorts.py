"""A cohort compiled into the set of its members' user ids: a subquery any analysis uses.

The set (see :class:`~profilesync.query.analyses.CohortDefinition`) is

    SELECT e.user_id FROM (every user_id of the events and of every profile relation) e
    LEFT JOIN <the profile relations its conditions name> ...
    WHERE <profile conditions>
      AND e.user_id [NOT] IN (SELECT user_id FROM events WHERE event_type = ... AND
                              "time" in (now - days, now] GROUP BY user_id
                              HAVING count(*) >= times) ...

``cohort:NAME`` filters (segmentation, funnels, retention) become ``user_id IN (...)``.
Profile conditions are compiled by the caller's property resolution (any object with the
segmentation compiler's ``_Properties`` interface: ``catalog``, ``bind``, ``dialect``,
``now``, ``condition``, ``join``), so this module needs nothing from the compiler and the
compiler can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlglot import exp

from profilesync.errors import NotFoundError, UiFix
from profilesync.query.analyses import Behaviour, CohortDefinition
from profilesync.query.model import Filter
from profilesync.query.relations import EVENTS, PROFILES, Catalog, profile_relation, relation


class Properties(Protocol):
    catalog: Catalog
    dialect: Any
    now: datetime | None

    def bind(self, value: Any) -> exp.Expr: ...
    def condition(self, f: Filter) -> exp.Expr: ...
    def join(self, select: exp.Select) -> exp.Select: ...


def definition(catalog: Catalog, name: str) -> CohortDefinition:
    """The saved cohort ``name`` as the catalog read it."""
    if name not in catalog.cohorts:
        known = ", ".join(sorted(catalog.cohorts)) or "none yet"
        raise NotFoundError(
            f"no cohort named {name!r} (known: {known}): add it with `profilesync query cohort add`",
            ui_fix=UiFix("See the Cohorts page", "/cohorts"),
        )
    return CohortDefinition.model_validate(catalog.cohorts[name])


def membership(props: Properties, f: Filter, user: exp.Expr) -> exp.Expr:
    """``user`` is (``is``) or is not (``is not``) a member of the cohort ``f`` names."""
    members = members_query(props, definition(props.catalog, f.name))
    inside = user.isin(query=members)
    if f.op == "is":
        return inside
    return exp.paren(exp.or_(user.copy().is_(exp.null()), exp.not_(inside.copy())))


def members_query(props: Properties, cohort: CohortDefinition) -> exp.Select:
    """The member ids of ``cohort`` (column ``user_id``); its profile joins are its own."""
    own = type(props)(props.catalog, props.bind, props.dialect, props.now)  # type: ignore[call-arg]
    user = exp.column("user_id", "e")
    conditions = [own.condition(f) for f in cohort.where]
    now = props.now or datetime.now(UTC).replace(tzinfo=None)
    for b in cohort.behaviour:
        done = user.copy().isin(query=_doers(props, b, now))
        conditions.append(done if b.did else exp.not_(done))
    select = exp.select(user.as_("user_id")).from_(_everyone(props.catalog).subquery("e"))
    select = own.join(select)
    return select.where(exp.and_(*conditions), copy=False) if conditions else select


def _everyone(catalog: Catalog) -> exp.Query:
    """Every user id with an event or a current profile."""
    user_id = exp.column("user_id")
    parts: list[exp.Query] = [
        exp.select(user_id.copy())
        .from_(relation(EVENTS))
        .where(exp.Not(this=user_id.copy().is_(exp.null())))
    ]
    parts += [
        exp.select(user_id.copy()).from_(profile_relation(name))
        for schema, name in catalog.tables
        if schema == PROFILES
    ]
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=True)
    return union


def _doers(props: Properties, b: Behaviour, now: datetime) -> exp.Select:
    """Users with at least ``b.times`` events of the type in ``(now - days, now]``."""
    time = exp.column("time", quoted=True)
    since = now - timedelta(days=b.days)
    return (
        exp.select(exp.column("user_id"))
        .from_(relation(EVENTS))
        .where(
            exp.and_(
                exp.column("event_type").eq(props.bind(b.event_type)),
                time > props.bind(since),
                time.copy() <= props.bind(now),
                exp.Not(this=exp.column("user_id").is_(exp.null())),
            )
        )
        .group_by(exp.column("user_id"))
        .having(exp.func("count", exp.Star()) >= props.bind(b.times))
    )
