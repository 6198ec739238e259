"""``profilesync demo --warehouse postgres`` end to end: its own server, two syncs, the diff."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from profilesync.cli import app

pytestmark = pytest.mark.postgres


def test_postgres_demo_shows_the_same_flow_as_the_delta_demo() -> None:
    # the server runs as another user when we are root: give it a directory it can reach
    directory = Path(tempfile.mkdtemp(prefix="profilesync-demo-"))
    os.chmod(directory, 0o755)
    try:
        result = CliRunner().invoke(
            app, ["demo", "--warehouse", "postgres", "--dir", str(directory / "demo")]
        )
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "wal_level = logical" in text
        assert "Head of Data" in text and "100022" in text
        assert 'rejected: user_id "123" is shorter than 5 characters' in text
        assert "profilesync_users, profilesync_scores" in text
        assert (directory / "demo" / "postgres" / "data" / "PG_VERSION").exists()
    finally:
        shutil.rmtree(directory)
