"""The connection form of each warehouse kind, as the API and the UI show it.

Fields, labels, help text and which fields are secrets are declared once, in each kind's
config spec (``profilesync/warehouses/<kind>/spec.py``); this module only names the
functions the pages and the API call.
"""

from __future__ import annotations

from profilesync.app.connections import kind as kind_info
from profilesync.app.connections import kinds as all_kinds

__all__ = ["all_kinds", "kind_info"]
