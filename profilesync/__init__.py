"""profilesync: keep a profile store in sync with warehouse user tables by change data capture.

The library is what the CLI, API and UI call. A whole sync in a few lines::

    from profilesync import Connection, Source, from_columns, open_store
    from profilesync.engine.sync import sync

    with open_store(".profilesync") as store:
        store.add_connection(Connection("lake", "delta", {"path": "warehouse"}))
        mapping = from_columns("prod_users.demo_data", "uid", [("title", "Title")])
        store.add_source(Source("users", "lake", mapping))
        result = sync(store, "users")          # first sync: a snapshot
        print(result.to_json())
        print(store.get_profile("100003"))     # {"user_id": "100003", "properties": {...}}
"""

from profilesync.errors import ProfilesyncError
from profilesync.mapping import from_columns, from_query
from profilesync.model import Checkpoint, Connection, Mapping, Source, SyncResult
from profilesync.store import DuckDBStore, Store, open_store

__all__ = [
    "Checkpoint",
    "Connection",
    "DuckDBStore",
    "Mapping",
    "ProfilesyncError",
    "Source",
    "Store",
    "SyncResult",
    "from_columns",
    "from_query",
    "open_store",
]
__version__ = "0.1.0"
