"""The fields of an event: every documented key of Amplitude's HTTP V2 event, its column
and how it is checked.

Each field is stored in a column of its own (objects as JSON text) and can be queried as
``field:<name>`` (the seven core fields have their own query kinds or roles). A key that is
not documented is ignored, as Amplitude ignores it.

Revenue, as Amplitude reads it: ``revenue = price * quantity`` (``quantity`` defaults to 1)
whenever ``price`` is sent, else ``revenue`` as sent; the SDKs' revenue helpers send these
as event properties (``$price``, ``$quantity``, ``$revenue``, ``$productId``,
``$revenueType``, ``$currency``), which are read when the top-level field is absent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One event field: its column, the JSON key it is sent as, and its kind.

    Kinds: ``event_type`` (required text), ``id`` (text or integer, at least the minimum id
    length), ``time`` (ms since the epoch or ISO 8601), ``object`` (a JSON object), ``text``
    (a string; numbers and booleans are kept as their text), ``int``, ``double`` (finite),
    ``bool``.
    """

    name: str
    kind: str
    wire: str = ""

    @property
    def key(self) -> str:
        return self.wire or self.name

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.kind]


SQL_TYPES = {
    "event_type": "VARCHAR",
    "id": "VARCHAR",
    "time": "TIMESTAMP",
    "object": "JSON",
    "text": "VARCHAR",
    "int": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
}

_TEXT = (
    "app_version",
    "platform",
    "os_name",
    "device_model",
    "country",
    "region",
    "city",
    "language",
    "ip",
)
#: the text fields added with migration 4 (device, location, advertising ids, client)
_MORE_TEXT = (
    "os_version",
    "device_brand",
    "device_manufacturer",
    "carrier",
    "dma",
    "version_name",
    "library",
    "user_agent",
    "partner_id",
    "idfa",
    "idfv",
    "adid",
    "android_id",
    "android_app_set_id",
)

#: every field, in the order of the typed relation and of the events table
SPEC: tuple[Field, ...] = (
    Field("event_type", "event_type"),
    Field("user_id", "id"),
    Field("device_id", "id"),
    Field("time", "time"),
    Field("event_properties", "object"),
    Field("user_properties", "object"),
    Field("insert_id", "text"),
    Field("session_id", "int"),
    *(Field(name, "text") for name in _TEXT),
    Field("revenue", "double"),
    Field("price", "double"),
    Field("quantity", "int"),
    Field("productId", "text"),
    Field("revenueType", "text"),
    Field("currency", "text"),
    Field("groups", "object"),
    Field("group_properties", "object"),
    Field("skip_user_properties_sync", "bool", "$skip_user_properties_sync"),
    *(Field(name, "text") for name in _MORE_TEXT),
    Field("location_lat", "double"),
    Field("location_lng", "double"),
    Field("event_id", "int"),
    Field("plan", "object"),
    Field("ingestion_metadata", "object"),
)
BY_NAME = {f.name: f for f in SPEC}
#: every field of an event, in the order of the typed relation
FIELDS: tuple[str, ...] = tuple(f.name for f in SPEC)
#: the fields a query names as ``field:<name>``, with their SQL type
STANDARD_FIELDS: dict[str, str] = {f.name: f.sql_type for f in SPEC[7:]}
#: revenue fields the SDKs' revenue helpers send as ``$``-prefixed event properties
REVENUE_PROPERTIES = ("price", "quantity", "revenue", "productId", "revenueType", "currency")
