"""The store's part for alerts: channels, each delivery attempt and the state per subject.

The catalog tables are ``alert_channels``, ``alert_deliveries`` and ``alert_state``
(schema version 5).
"""

from __future__ import annotations

from typing import Protocol


class Alerting(Protocol):
    """Alert channels, deliveries and state (implemented for every backend by the catalog)."""
