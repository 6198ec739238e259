"""The connection form of each warehouse kind, rendered from its config spec.

The UI builds the "Set up connection" step and the "Add more" tiles from
:func:`profilesync.warehouses.config_spec`: fields, labels, help text and which fields are
secrets are declared there once, next to the warehouse.
"""

from __future__ import annotations

from typing import Any

from profilesync.errors import ConfigurationError
from profilesync.warehouses import KINDS, config_spec, warehouse_class


def _field(field: Any) -> dict[str, Any]:
    """A spec field as the form templates read it."""
    return {
        "name": field.name,
        "label": field.label,
        "required": field.required,
        "secret": field.secret,
        "multiline": field.multiline,
        "placeholder": field.placeholder,
        "help": field.help,
    }


def kind_info(kind: str) -> dict[str, Any]:
    """A kind's form plus what its warehouse can do (or why it is unavailable)."""
    spec = config_spec(kind)
    try:
        cls = warehouse_class(kind)
        available, reason = True, None
        supports_cdc = bool(cls.supports_cdc)
    except (ConfigurationError, ImportError) as exc:
        available, reason, supports_cdc = False, str(exc), False
    return {
        "kind": kind,
        "label": spec.label,
        "blurb": spec.blurb,
        "available": available,
        "unavailable_reason": reason,
        "supports_cdc": supports_cdc,
        "fields": [_field(f) for f in spec.fields],
    }


def all_kinds() -> list[dict[str, Any]]:
    return [kind_info(k) for k in KINDS]
