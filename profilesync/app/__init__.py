"""Use cases: what the CLI, the REST API and the web UI do, each written once.

The shells (:mod:`profilesync.cli`, :mod:`profilesync.server`) parse input and render
output; everything between (opening the store and warehouses, running checks, shaping a
source or connection as JSON) lives here, so the three surfaces cannot drift apart.
Every function takes an open store; :func:`open_store` / :func:`session` choose the
backend, the only place above ``profilesync.store`` that names one.
"""

from __future__ import annotations

from profilesync.app.home import Store, explain_store_error, open_store, session

__all__ = ["Store", "explain_store_error", "open_store", "session"]
