"""Turn a ``--table``/``--property`` mapping or a profile ``SELECT`` into a :class:`Mapping`.

The query form is the one warehouse UIs ask for::

    SELECT user_id AS "user_id", upgrade_propensity_score AS "Upgrade Propensity Score"
    FROM ml_models.prod_propensity_scoring WHERE model_version > 2

It must read one table, alias one output column to ``user_id`` and may filter with
``WHERE``. Expressions are parsed in the warehouse's dialect and kept in DuckDB's, since
changes are mapped locally over Arrow batches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import sqlglot
from sqlglot import exp

from profilesync.errors import ConfigurationError
from profilesync.model import Mapping, PropertyMapping
from profilesync.sandbox import refuse_file_functions

USER_ID = "user_id"
#: ``Mapping.table`` of a query the warehouse runs as written (snapshot diff only)
QUERY_TABLE = "(query)"
SUPPORTED = (
    'a single-table SELECT whose columns are aliased to "user_id" and to property names, '
    "with simple expressions and an optional WHERE filter"
)


def quote(identifier: str) -> str:
    """Quote an identifier for DuckDB SQL."""
    return '"' + identifier.replace('"', '""') + '"'


def parse_property(spec: str) -> tuple[str, str]:
    """``"score=Upgrade Score"`` -> ``("score", "Upgrade Score")``; a bare column keeps its name."""
    column, _, name = spec.partition("=")
    column, name = column.strip(), name.strip() or column.strip()
    if not column:
        raise ConfigurationError(
            f"--property {spec!r} names no column: write COLUMN[=Display Name]",
            ui_message=f"the property {spec!r} names no column",
            ui_fix="Choose a column for each property in the column mapping",
        )
    return column, name


def from_columns(table: str, user_id: str, properties: list[tuple[str, str]]) -> Mapping:
    """The ``--table T --user-id C --property COL[=Name]`` form."""
    names = [name for _, name in properties]
    _check_names(names)
    columns = tuple(dict.fromkeys([user_id, *(column for column, _ in properties)]))
    return Mapping(
        table=table,
        user_id=quote(user_id),
        properties=tuple(PropertyMapping(name, quote(col), col) for col, name in properties),
        columns=columns,
    )


def from_query(query: str, dialect: str = "duckdb", *, pushdown: bool = False) -> Mapping:
    """Parse a profile ``SELECT`` (see module docstring); refuse anything else clearly.

    With ``pushdown`` (snapshot diff on a SQL warehouse) any query whose output has a
    ``user_id`` column is accepted, joins and CTEs included: the warehouse runs it as
    written and the mapping reads its output columns (``Mapping.table == QUERY_TABLE``).
    """
    statements = checked(query, dialect)
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ConfigurationError(f"the query must be one SELECT. Supported: {SUPPORTED}")
    if pushdown:
        return _pushdown(statements[0], query)
    select = statements[0]
    if not isinstance(select, exp.Select):
        raise ConfigurationError(f"the query uses a UNION or set operation. Supported: {SUPPORTED}")
    _refuse_unsupported(select)
    table = _single_table(select)
    user_id: str | None = None
    properties: list[PropertyMapping] = []
    for projection in select.expressions:
        if isinstance(projection, exp.Star):
            raise ConfigurationError(
                f"SELECT * cannot be mapped: alias each column. Supported: {SUPPORTED}"
            )
        name = projection.alias_or_name
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        _unqualify(inner)
        expression = inner.sql("duckdb")
        if name == USER_ID:
            user_id = expression
        else:
            column = inner.name if isinstance(inner, exp.Column) else None
            properties.append(PropertyMapping(name, expression, column))
    if user_id is None:
        raise ConfigurationError(
            f'the query has no column aliased "user_id": write e.g. SELECT uid AS "user_id", ... '
            f"Supported: {SUPPORTED}"
        )
    _check_names([p.name for p in properties])
    where = select.args.get("where")
    where_sql = None
    if where is not None:
        _unqualify(where.this)
        where_sql = where.this.sql("duckdb")
    columns = sorted({c.name for c in select.find_all(exp.Column)})
    return Mapping(table, user_id, tuple(properties), tuple(columns), where_sql, query)


def checked(query: str, dialect: str) -> list[exp.Expr]:
    """The statements of ``query``, refused if one reads files or is not a query."""
    statements = parse(query, dialect)
    for statement in statements:
        refuse_file_functions(statement)
    return statements


def parse(query: str, dialect: str) -> list[exp.Expr]:
    """The statements of ``query``; any parse error is one clean line that says where.

    sqlglot's own messages span lines and underline the culprit with terminal escape
    codes, and an unterminated comment or string is a ``TokenError`` that tells nothing
    about where: neither belongs in a CLI line or an API's JSON.
    """
    try:
        with _quiet_parser():
            statements = sqlglot.parse(query, read=dialect)
    except sqlglot.errors.ParseError as exc:
        raise ConfigurationError(
            f"the query does not parse: {_where(exc)}. Supported: {SUPPORTED}"
        ) from None
    except sqlglot.errors.SqlglotError:
        what = _unterminated(query) or "a character sequence that is not SQL"
        raise ConfigurationError(
            f"the query does not parse: it has {what}. Supported: {SUPPORTED}"
        ) from None
    return [s for s in statements if s is not None]


@contextmanager
def _quiet_parser() -> Iterator[None]:
    """sqlglot logs a warning for SQL it keeps as an opaque command (``LOAD x``): the
    refusal that follows says it better, and a log line would break the CLI's one line."""
    log = logging.getLogger("sqlglot")
    previous = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(previous)


def _where(exc: sqlglot.errors.ParseError) -> str:
    """``Invalid expression / Unexpected token at line 1, column 12, near 'FROM'``."""
    if not exc.errors:
        return _one_line(str(exc))
    error = exc.errors[0]
    description = str(error.get("description"))
    if "Unexpected token" in description:  # sqlglot's "Invalid expression / Unexpected token"
        description = "a word or symbol out of place"
    # "Required keyword: 'this' missing for <class 'sqlglot.expressions.core.Paren'>"
    description = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", description)
    near = _one_line(str(error.get("highlight") or ""))[:40]
    where = f"{description} at line {error.get('line')}, column {error.get('col')}"
    return _one_line(f"{where}, near {near!r}" if near else where)


def _one_line(text: str) -> str:
    """No terminal escape codes, no line breaks."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).split())


def _unterminated(query: str) -> str | None:
    """What is left open at the end of ``query``: a comment, a string or a quoted name."""
    closers = {"/*": "*/", "'": "'", '"': '"', "$$": "$$", "--": "\n"}
    names = {
        "/*": "an unterminated /* comment (close it with */)",
        "'": "an unterminated 'string' (close it with ')",
        '"': 'an unterminated "quoted name" (close it with ")',
        "$$": "an unterminated $$ string (close it with $$)",
    }
    i = 0
    while i < len(query):
        opener = next((o for o in closers if query.startswith(o, i)), None)
        if opener is None:
            i += 1
            continue
        end = query.find(closers[opener], i + len(opener))
        if end < 0:
            return names.get(opener)
        i = end + len(closers[opener])
    return None


def _pushdown(query: exp.Query, text: str) -> Mapping:
    names = [p.alias_or_name for p in query.selects]
    if any(isinstance(p, exp.Star) for p in query.selects) or "" in names:
        raise ConfigurationError(
            "name every output column of the query (no SELECT *, alias expressions)"
        )
    if USER_ID not in names:
        raise ConfigurationError(
            'the query has no output column named "user_id": alias one, e.g. uid AS "user_id"'
        )
    props = [n for n in names if n != USER_ID]
    _check_names(props)
    return Mapping(
        table=QUERY_TABLE,
        user_id=quote(USER_ID),
        properties=tuple(PropertyMapping(n, quote(n), n) for n in props),
        columns=tuple(names),
        query=text,
    )


def _refuse_unsupported(select: exp.Select) -> None:
    for kind, what in (
        (exp.Join, "a JOIN"),
        (exp.With, "a WITH (CTE)"),
        (exp.Union, "a UNION"),
        (exp.Group, "a GROUP BY"),
        (exp.Window, "a window function"),
        (exp.Subquery, "a subquery"),
    ):
        if select.find(kind) is not None:
            raise ConfigurationError(
                f"the query uses {what}, which change data capture cannot follow row by row. "
                f"Supported: {SUPPORTED}; for anything else use a view with --strategy diff",
                ui_fix="Choose the snapshot diff strategy, or read a view of the table",
            )
    for clause in ("limit", "order", "having", "distinct"):
        if select.args.get(clause):
            raise ConfigurationError(f"the query uses {clause.upper()}. Supported: {SUPPORTED}")


def _single_table(select: exp.Select) -> str:
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is None or not isinstance(from_.this, exp.Table):
        raise ConfigurationError(f"the query must read FROM one table. Supported: {SUPPORTED}")
    table = from_.this
    return ".".join(part.name for part in table.parts)


def _unqualify(node: exp.Expression) -> None:
    """``t.col`` -> ``col``: changes are evaluated over one Arrow batch without a table name."""
    for column in node.find_all(exp.Column):
        column.set("table", None)
        column.set("db", None)
        column.set("catalog", None)


def _check_names(names: list[str]) -> None:
    # a source's properties are columns of one DuckDB table, where names ignore case
    seen: set[str] = set()
    for name in names:
        if name.lower() == USER_ID:
            raise ConfigurationError(
                '"user_id" is the key, not a property: map it with --user-id',
                ui_message='"user_id" is the key, not a property',
                ui_fix="Choose its column as the user_id column instead",
            )
        if name.startswith("_"):
            raise ConfigurationError(f"property {name!r}: names starting with '_' are reserved")
        if name.lower() in seen:
            raise ConfigurationError(
                f"property {name!r} is mapped twice in this source (names ignore case)"
            )
        seen.add(name.lower())
