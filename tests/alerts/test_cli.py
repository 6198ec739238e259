"""``profilesync alert`` and manual ``profilesync sync`` runs, through the real entry point,
against real receivers."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.alerts.conftest import Mailbox, Webhook, free_port
from tests.conftest import Cli, Warehouse, users_table


def _source(cli: Cli, warehouse: Warehouse, rows: int = 8) -> None:
    warehouse.create("prod.users", users_table(rows))
    cli.ok("connection", "add", "lake", "--kind", "delta", "--path", str(warehouse.root))
    cli.ok(
        "source", "add", "users", "--connection", "lake", "--table", "prod.users",
        "--user-id", "uid", "--property", "title=Title",
    )  # fmt: skip


def test_channels_are_added_listed_tested_and_removed(cli: Cli, webhook: Webhook) -> None:
    added = cli.ok("alert", "add", "hook", "--webhook", webhook.url, "--on", "run_failed,recovered")
    assert "alert channel hook (webhook to http://127.0.0.1:" in added.stdout
    listed = cli.ok("alert", "list").stdout
    assert "run_failed, recovered" in listed
    assert "secretpart" not in listed  # a webhook's path is its credential: never shown
    assert cli.json("alert", "list")[0]["target"].endswith("/***")

    tested = cli.ok("alert", "test", "hook")
    assert tested.stdout.strip() == "hook: sent: HTTP 200: ok"
    assert webhook.bodies[0]["profilesync"] == {"event": "test", "subject": None, "channel": "hook"}
    assert "Test alert from profilesync to hook" in webhook.bodies[0]["text"]

    webhook.status, webhook.reply = 404, "no_service"
    failed = cli("alert", "test", "hook")
    assert failed.returncode == 1 and "hook: failed: HTTP 404: no_service" in failed.stderr

    shown = cli.json("alert", "deliveries", "--limit", "5")
    assert [(d["status"], d["answer"]) for d in shown] == [
        ("failed", "HTTP 404: no_service"),
        ("sent", "HTTP 200: ok"),
    ]
    assert cli.ok("alert", "remove", "hook").stdout.strip() == "alert channel hook removed"
    assert cli.json("alert", "list") == []
    assert len(cli.json("alert", "deliveries")) == 2  # the history stays


def test_bad_channels_are_refused_with_the_fix(cli: Cli) -> None:
    cases = [
        (("--webhook", "hooks.example.com/x"), "is not an http(s) URL"),
        (("--email", "ops@example.com"), "needs an SMTP host (--smtp-host)"),
        (
            ("--email", "not-an-address", "--smtp-host", "h", "--smtp-from", "a@b.c"),
            "'not-an-address'",
        ),
        (("--webhook", "https://h.example.com/x", "--on", "fire"), "unknown alert event(s) fire"),
        ((), "give either --webhook URL or --email TO"),
    ]
    for args, message in cases:
        proc = cli("alert", "add", "x", *args)
        assert proc.returncode == 1 and proc.stderr.startswith("error: "), proc.stderr
        assert message in proc.stderr
    assert cli.json("alert", "list") == []


def test_email_with_a_login_delivers_and_keeps_the_password_encrypted(
    cli: Cli, tmp_path: Path
) -> None:
    box = Mailbox(login=("alerts", "s3cret-pass"))
    try:
        secret = tmp_path / "smtp-password"
        secret.write_text("s3cret-pass\n")
        cli.ok(
            "alert", "add", "mail", "--email", "ops@example.com,data@example.com",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(box.port), "--smtp-security", "none",
            "--smtp-user", "alerts", "--smtp-password-file", str(secret),
            "--smtp-from", "profilesync@example.com",
        )  # fmt: skip
        assert cli.ok("alert", "test", "mail").stdout.strip() == (
            "mail: sent: 250 Message accepted for delivery"
        )
        assert box.logins == [("alerts", "s3cret-pass")]
        assert len(box.messages) == 1
        mail = box.messages[0]
        assert mail["To"] == "ops@example.com, data@example.com"
        assert mail["Subject"] == "[profilesync] Test alert from profilesync to mail"
    finally:
        box.close()
    with duckdb.connect(str(cli.home / "profilesync.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT config FROM alert_channels").fetchone()
    assert stored is not None and "s3cret-pass" not in stored[0] and "$fernet" in stored[0]
    assert "s3cret-pass" not in cli.ok("alert", "list").stdout


def test_manual_syncs_alert_quota_thresholds_once_a_month_and_a_stop_once(
    cli: Cli, warehouse: Warehouse, webhook: Webhook
) -> None:
    _source(cli, warehouse, rows=8)
    cli.ok("alert", "add", "hook", "--webhook", webhook.url)
    cli.ok("config", "set", "operations_limit", "10")
    cli.ok("sync", "users")  # 8 of 10
    assert webhook.events() == ["quota_80"]
    fields = webhook.bodies[0]["profilesync"]
    assert (fields["used"], fields["limit"], fields["threshold"]) == (8, 10, 80)
    assert "80% of this month's operations used" in webhook.bodies[0]["text"]
    warehouse.append("prod.users", users_table(1, start=20_001))
    cli.ok("sync", "users")  # 9 of 10: past 80% already, nothing new
    assert webhook.events() == ["quota_80"]
    warehouse.append("prod.users", users_table(1, start=20_002))
    cli.ok("sync", "users")  # 10 of 10
    assert webhook.events() == ["quota_80", "quota_100"]
    warehouse.append("prod.users", users_table(2, start=20_003))
    for _ in range(2):  # refused before anything is applied: the source needs a person
        assert cli("sync", "users").returncode == 1
    assert webhook.events() == ["quota_80", "quota_100", "source_stopped"]
    assert webhook.bodies[-1]["profilesync"]["error_code"] == "quota_exceeded"
    cli.ok("config", "set", "operations_limit", "default")
    cli.ok("sync", "users")
    assert webhook.events() == ["quota_80", "quota_100", "source_stopped", "recovered"]


def test_a_receiver_that_is_down_does_not_fail_a_manual_sync(
    cli: Cli, warehouse: Warehouse
) -> None:
    _source(cli, warehouse, rows=8)
    cli.ok("alert", "add", "gone", "--webhook", f"http://127.0.0.1:{free_port()}/hook")
    cli.ok("config", "set", "operations_limit", "10")
    assert "8 inserted" in cli.ok("sync", "users").stdout
    shown = cli.json("alert", "deliveries")
    assert [(d["event"], d["status"]) for d in shown] == [("quota_80", "failed")]
    assert "Connection refused" in shown[0]["answer"]
