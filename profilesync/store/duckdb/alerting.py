"""Alert channels, deliveries and state in the catalog file (see profilesync.store.alerting)."""

from __future__ import annotations

import json
from typing import Any

from profilesync.errors import ConfigurationError, NotFoundError, UiFix
from profilesync.model import now
from profilesync.secrets import seal, unseal
from profilesync.store.alerting import SECRET_SETTINGS, Channel, Delivery
from profilesync.store.duckdb.connected import Connected

_DELIVERY = "id, channel, event, subject, title, status, answer, attempted_at"


class AlertTables(Connected):
    """The :class:`~profilesync.store.alerting.Alerting` part of the catalog."""

    # -- channels ----------------------------------------------------------------------
    def add_alert_channel(self, channel: Channel) -> Channel:
        if self._exists("alert_channels", "name", channel.name):
            raise ConfigurationError(
                f"alert channel {channel.name!r} exists already: pick another name, or remove "
                "it first"
            )
        self.con.execute(
            "INSERT INTO alert_channels VALUES (?, ?, ?, ?, ?)",
            [
                channel.name,
                channel.kind,
                json.dumps(self._seal_channel(channel)),
                json.dumps(list(channel.events)),
                now(),
            ],
        )
        return self.get_alert_channel(channel.name)

    def get_alert_channel(self, name: str) -> Channel:
        found = self._channels("WHERE name = ?", [name])
        if not found:
            raise NotFoundError(
                f"no alert channel named {name!r}: see `profilesync alert list`",
                ui_fix=UiFix("See the Alerts page", "/alerts"),
            )
        return found[0]

    def list_alert_channels(self) -> list[Channel]:
        return self._channels("ORDER BY name", [])

    def delete_alert_channel(self, name: str) -> None:
        self.get_alert_channel(name)
        self.con.execute("DELETE FROM alert_channels WHERE name = ?", [name])

    def _channels(self, clause: str, params: list[Any]) -> list[Channel]:
        rows = self.con.execute(
            f"SELECT name, kind, config, events, created_at FROM alert_channels {clause}", params
        ).fetchall()
        return [
            Channel(
                r[0],
                r[1],
                self._unseal_channel(r[0], json.loads(r[2])),
                tuple(json.loads(r[3])),
                r[4],
            )
            for r in rows
        ]

    def _seal_channel(self, channel: Channel) -> dict[str, Any]:
        """Secret settings encrypted as a connection's are (the key stays outside the file)."""
        config = seal(self.home, channel.kind, channel.config)  # settings named like secrets
        for key in SECRET_SETTINGS:
            if isinstance(config.get(key), str) and config[key]:
                # sealed under a name secrets.seal always encrypts; unseal reads any key
                config[key] = seal(self.home, channel.kind, {"secret": config[key]})["secret"]
        return config

    def _unseal_channel(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        try:
            return unseal(self.home, name, config)
        except ConfigurationError:
            raise ConfigurationError(
                f"the secrets of alert channel {name!r} cannot be decrypted with the key in "
                "use: restore the key they were saved with, or remove the channel "
                f"(`profilesync alert remove {name}`) and add it again",
                ui_fix=UiFix("Remove the channel on the Alerts page and add it again", "/alerts"),
            ) from None

    # -- deliveries --------------------------------------------------------------------
    def record_delivery(
        self,
        channel: str,
        event: str,
        subject: str | None,
        title: str,
        status: str,
        answer: str | None,
    ) -> Delivery:
        with self.transaction() as con:
            row = con.execute(
                f"INSERT INTO alert_deliveries ({_DELIVERY}) SELECT coalesce(max(id), 0) + 1, "
                f"?, ?, ?, ?, ?, ?, ? FROM alert_deliveries RETURNING {_DELIVERY}",
                [channel, event, subject, title, status, answer, now()],
            ).fetchone()
        assert row is not None
        return Delivery(*row)

    def deliveries(self, limit: int = 50, channel: str | None = None) -> list[Delivery]:
        where, params = ("WHERE channel = ?", [channel]) if channel else ("", [])
        rows = self.con.execute(
            f"SELECT {_DELIVERY} FROM alert_deliveries {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [Delivery(*r) for r in rows]

    # -- state -------------------------------------------------------------------------
    def alert_state(self, subject: str) -> str | None:
        row = self.con.execute(
            "SELECT state FROM alert_state WHERE subject = ?", [subject]
        ).fetchone()
        return row[0] if row else None

    def swap_alert_state(self, subject: str, state: str) -> str | None:
        with self.transaction() as con:
            row = con.execute(
                "SELECT state FROM alert_state WHERE subject = ?", [subject]
            ).fetchone()
            previous = row[0] if row else None
            if previous != state:
                con.execute("DELETE FROM alert_state WHERE subject = ?", [subject])
                con.execute("INSERT INTO alert_state VALUES (?, ?, ?)", [subject, state, now()])
        return previous

    def forget_alert_state(self, subject: str) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM alert_state WHERE subject = ?", [subject])
