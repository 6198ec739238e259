"""Keep SQL written by a user away from the files of the machine that runs it.

A source query, a mapping expression or a filter is SQL that someone other than the
operator may write (through the API or the web UI). DuckDB runs such SQL with every
file the process can read within reach: ``read_text('/etc/shadow')``, the store's own
WAL, the key that seals connection secrets. Two independent guards stop that:

- :func:`lock_down` turns DuckDB's external access off for a connection's database,
  allowing only the files that database must reach (a warehouse file, a lake's catalog
  and data), and locks the configuration so a statement cannot turn it back on;
- :func:`refuse_file_functions` refuses, before anything runs, a parsed query that
  names a table function reading files or running other SQL, a file path as a table,
  or a statement that is not a query, with a message that says which one.

The first holds even for SQL that the parser reads differently from DuckDB; the second
gives a clear refusal instead of DuckDB's permission error, and covers paths that
:func:`lock_down` has to allow (a lake's data directory, a database's own WAL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import duckdb
from sqlglot import exp

from profilesync.errors import ConfigurationError

#: table functions that read files or run SQL given as text, by name (lower case)
REFUSED_FUNCTIONS = frozenset(
    {
        "glob",
        "sniff_csv",
        "delta_scan",
        "query",
        "query_table",
        "json_execute_serialized_sql",
        "arrow_scan",
        "arrow_scan_dumb",
        "pandas_scan",
        "python_map_function",
        "checkpoint",
        "force_checkpoint",
        "enable_logging",
        "enable_profiling",
        "ducklake_add_data_files",
        "ducklake_cleanup_old_files",
        "ducklake_delete_orphaned_files",
        "ducklake_list_files",
        "st_read",
        # Postgres, where a pushed-down query runs: files of the database server
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "dblink",
    }
)
#: whole families of such functions: read_csv, read_json_auto, parquet_scan, iceberg_scan, ...
REFUSED_PREFIXES = ("read_", "parquet_", "iceberg_", "sqlite_", "postgres_", "mysql_", "pg_read_")
#: statements that touch files, extensions or settings; a source query is one SELECT
REFUSED_STATEMENTS: dict[type[exp.Expression], str] = {
    exp.Attach: "ATTACH",
    exp.Detach: "DETACH",
    exp.Copy: "COPY",
    exp.Install: "INSTALL",
    exp.Set: "SET",
    exp.Pragma: "PRAGMA",
    exp.Command: "a command",
    exp.Create: "CREATE",
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Drop: "DROP",
}
#: a table "name" DuckDB would read as a file (``FROM 'users.csv'``, ``FROM "/etc/passwd"``)
_FILE_LIKE = re.compile(
    r"[/\\]|://|\.(csv|tsv|txt|json|jsonl|ndjson|parquet|arrow|xlsx|duckdb|db|ducklake|gz|zst)$",
    re.IGNORECASE,
)


def lock_down(
    con: duckdb.DuckDBPyConnection,
    *,
    allowed_dirs: Iterable[str] = (),
    allowed_paths: Iterable[str] = (),
) -> None:
    """Turn external access off for ``con``'s database, then lock its configuration.

    Measured with DuckDB 1.5.5:

    - the allow-lists can only be set while external access is still on, and every
      setting (``TimeZone`` and ``threads`` included) is refused once the configuration
      is locked: make every ``SET``, ``LOAD`` and ``ATTACH`` a connection needs first;
    - the database's own file and WAL stay readable and writable (DuckDB allows them
      itself, so SQL on that connection can read them too), and spilling to the temp
      directory keeps working;
    - ``ATTACH`` of an allowed file still works afterwards, everything else fails with
      ``Permission Error: Cannot access file ... disabled by configuration``, and
      ``INSTALL``/``LOAD`` of an extension are refused.

    The settings are database-wide: every cursor of ``con`` is locked down as well, and so
    is every later connection to the same file in this process (DuckDB shares one
    database instance among them). On such an instance this does nothing: it was locked
    down for the same file already, and any ``SET`` would be refused.
    """
    if locked(con):
        return
    dirs = [_dir(d) for d in allowed_dirs]
    paths = list(allowed_paths)
    if dirs:
        con.execute(f"SET allowed_directories = {_sql_list(dirs)}")
    if paths:
        con.execute(f"SET allowed_paths = {_sql_list(paths)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def locked(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s database refuses configuration changes (see :func:`lock_down`)."""
    row = con.execute("SELECT current_setting('lock_configuration')").fetchone()
    return bool(row and row[0])


def refuse_file_functions(tree: exp.Expr, what: str = "the query") -> None:
    """Refuse SQL that reads files or runs other SQL, naming what it uses.

    Walks the whole tree, so a file function inside a subquery, a CTE, a ``UNION`` or a
    ``LATERAL`` join is found as well as one in the main ``FROM``.
    """
    for node in tree.walk():
        for kind, name in REFUSED_STATEMENTS.items():
            if isinstance(node, kind):
                if isinstance(node, exp.Command):  # what sqlglot does not parse: LOAD, EXPORT
                    name = str(node.this).upper()
                raise ConfigurationError(
                    f"{what} uses {name}: a source query must be one SELECT that reads the "
                    "warehouse's tables"
                )
        if isinstance(node, exp.Func):
            name = function_name(node)
            if name in REFUSED_FUNCTIONS or name.startswith(REFUSED_PREFIXES):
                raise ConfigurationError(
                    f"{what} uses {name}(): table functions that read files (or run other SQL) "
                    "are not allowed in a source query; select from the warehouse's tables"
                )
        named = isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier)
        if named and _FILE_LIKE.search(node.name):
            raise ConfigurationError(
                f"{what} reads {node.name!r}, which names a file: reading files is not "
                "allowed in a source query; select from the warehouse's tables"
            )


def function_name(node: exp.Func) -> str:
    """A function's name as written, lower case (``READ_CSV`` parses to ``exp.ReadCSV``)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _dir(path: str) -> str:
    """A directory with its trailing separator: DuckDB allows by prefix, and ``/data``
    without one would also allow ``/data-private``."""
    return path if path.endswith("/") else path + "/"


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
