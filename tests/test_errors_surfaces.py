"""Each error speaks the surface it appears on: the CLI prints the cause and the command,
the API adds both fixes, the web UI shows the cause and the UI's fix (never a command)."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

import profilesync
from profilesync import errors
from profilesync.engine.quota import Quota
from profilesync.errors import (
    ProfilesyncError,
    QuotaExceededError,
    TableReplacedError,
    UiFix,
    ui_view,
    without_cli_advice,
)
from profilesync.warehouses.delta.rules import (
    RETENTION_REMEDY,
    cdf_off_error,
    check_feed_since,
    history_changed,
)
from profilesync.warehouses.delta.spec import SPEC as DELTA_SPEC
from profilesync.warehouses.rules import expired_error, replaced_error
from tests.conftest import Cli, Warehouse, users_table

CLI_TEXT = re.compile(r"(?<![\w-])--[a-z]|profilesync (sync|source|connection|config|events)\b")


def _raised(call: object) -> ProfilesyncError:
    with pytest.raises(ProfilesyncError) as info:
        call()  # type: ignore[operator]
    return info.value


def _errors_with_cli_advice() -> list[ProfilesyncError]:
    return [
        replaced_error("prod.users", "Delta table id changed from a to b", "users"),
        expired_error("prod.users", "after version 3", "log gone", RETENTION_REMEDY, "users"),
        cdf_off_error("prod.users", "users"),
        history_changed("prod.users", "its version went back from 5 to 3", "users"),
        _raised(lambda: check_feed_since("prod.users", 9, 3, "users")),
        _raised(lambda: Quota.for_plan("growth", 10).check(8, 5)),
        _raised(lambda: DELTA_SPEC.check({})),
        _raised(lambda: DELTA_SPEC.check({"path": "/nonexistent/lake"})),
    ]


@pytest.mark.parametrize("error", _errors_with_cli_advice(), ids=lambda e: e.code)
def test_each_error_has_a_ui_fix_and_a_ui_message_without_commands(
    error: ProfilesyncError,
) -> None:
    assert CLI_TEXT.search(str(error)), "the CLI's message keeps its command"
    assert not CLI_TEXT.search(error.ui_message), error.ui_message
    assert error.ui_message and error.ui_message[0] == str(error)[0]  # the cause stays
    fix = error.ui_fix_for("users")
    assert isinstance(fix, UiFix) and fix.label
    assert not CLI_TEXT.search(fix.label)
    fixes = error.fixes("users")
    assert fixes["ui"] == fix.to_json()
    if fixes["cli"]:
        assert fixes["cli"] in str(error)  # the CLI fix is the command the message names


def test_a_stored_error_gives_the_same_view_as_the_raised_one() -> None:
    """A failed run keeps the message and the code: the pages rebuild the view from them."""
    raised = replaced_error("prod.users", "Delta table id changed from a to b", "users")
    stored = ui_view(str(raised), raised.code, "users")
    assert stored == ui_view(raised, source="users")
    assert stored["fix"] == UiFix("Resync", "/sources/users#resync")
    quota = ui_view(str(_raised(lambda: Quota.for_plan("growth", 1).check(1, 1))), "quota_exceeded")
    assert quota["fix"] is not None and quota["fix"].href == "/usage"
    assert errors.error_class("table_replaced") is TableReplacedError
    assert errors.error_class("no such code") is ProfilesyncError


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "table t was replaced. CDC needs incremental models; run "
            "`profilesync sync users --resync` to diff the new table against the store.",
            "table t was replaced. CDC needs incremental models.",
        ),
        (
            "the changes are gone. Nothing was applied. Raise the retention, and run "
            "`profilesync sync users --resync` to diff the table against the store.",
            "the changes are gone. Nothing was applied. Raise the retention.",
        ),
        (
            "x needs more memory. Nothing was applied. Raise the limit, e.g. "
            "`profilesync config set sync_memory_limit 1GB`, and sync again.",
            "x needs more memory. Nothing was applied.",
        ),
        (
            "PostgreSQL 12: CDC needs 13 or later (use --strategy diff)",
            "PostgreSQL 12: CDC needs 13 or later.",
        ),
        ("/x is not a directory: --path must hold Delta tables", "/x is not a directory."),
        ("no advice here (version 3: fine).", "no advice here (version 3: fine)."),
    ],
)
def test_cli_advice_is_cut_by_sentence_or_clause(message: str, shown: str) -> None:
    assert without_cli_advice(message) == shown


def test_the_cli_prints_the_cause_and_the_command_as_before(lake: Warehouse, cli: Cli) -> None:
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(lake.root))
    cli.ok(
        "source", "add", "users", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "title=Title",
    )  # fmt: skip
    cli.ok("sync", "users")
    shutil.rmtree(lake.path("prod.users"))
    lake.create("prod.users", users_table(2))
    failed = cli("sync", "users")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: table prod.users was dropped and re-created (Delta")
    assert failed.stderr.rstrip().endswith(
        "CDC needs incremental models; run `profilesync sync users --resync` to diff the new "
        "table against the store."
    )
    assert "Resync" not in failed.stderr.replace("--resync", "")  # no UI words on the CLI


@pytest.fixture
def lake(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "lake")
    warehouse.create("prod.users", users_table(3))
    return warehouse


#: CLI advice in a message's literal parts (a backticked command may span several)
_ADVICE = re.compile(
    r"`profilesync |profilesync (sync|source|connection|config|events)\b|(?<![\w-])--[a-z]"
)
#: modules whose errors no page shows: the command line itself, file imports, the
#: server's own start-up flags and the home it is started on, the shape of a source
#: spec (the UI always sends a table or a query, never both)
CLI_ONLY = {
    "cli",
    "events/importer.py",
    "server/serve.py",
    "server/logs.py",
    "server/scheduler.py",
    "store/backends.py",
    "store/home.py",
    "engine/checks.py",
}


def _advice_without_ui_fix(path: Path) -> list[str]:
    """Error constructions in ``path`` whose message gives CLI advice but no UI fix."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        cls = getattr(errors, node.func.id, None)
        if not (isinstance(cls, type) and issubclass(cls, ProfilesyncError)):
            continue
        text = " ".join(
            c.value
            for a in node.args
            for c in ast.walk(a)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        )
        named = {k.arg for k in node.keywords}
        spread = any(k.arg is None for k in node.keywords)  # **resync_fixes(...)
        if _ADVICE.search(text) and not (
            named & {"ui_fix", "ui_message"} or spread or cls.default_ui_fix
        ):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_every_error_giving_cli_advice_carries_a_ui_fix() -> None:
    """A guard for new raise sites: CLI advice in a message needs a fix the UI can show.

    Errors only the CLI or ``serve`` itself can meet (a bad ``--home``, ``--format`` of a
    file import, the server's own flags) are left out: no page shows them."""
    root = Path(profilesync.__file__).parent
    missing = [
        where
        for path in sorted(root.rglob("*.py"))
        if path.relative_to(root).parts[0] not in CLI_ONLY
        and path.relative_to(root).as_posix() not in CLI_ONLY
        for where in _advice_without_ui_fix(path)
    ]
    assert missing == []


def test_quota_error_keeps_its_message() -> None:
    error = _raised(lambda: Quota.for_plan("growth", 10).check(8, 5))
    assert isinstance(error, QuotaExceededError)
    assert str(error).endswith("(`profilesync config set plan enterprise`).")
    assert error.fixes()["cli"] == "profilesync config set plan enterprise"
