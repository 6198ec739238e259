"""Behavioural events joined with the current profiles.

- :mod:`~profilesync.events.validate`: events checked and typed in one DuckDB statement;
- :mod:`~profilesync.events.ingest`: ``POST /2/httpapi`` batches, validated and stored with
  ``insert_id`` dedup over 7 days (:mod:`~profilesync.events.dedup`);
- :mod:`~profilesync.events.projects`: projects and their API keys (kept as hashes);
- :mod:`~profilesync.events.importer`: ``profilesync events import FILE`` (JSON Lines, CSV, Parquet);

Segmentation and user lookup, with profile properties joined at query time (always the
latest synced values), are :mod:`profilesync.query`; the HTTP and command line shells are
``profilesync.server.events`` and ``profilesync.cli.events``, over :mod:`profilesync.app`.

Example::

    from profilesync import query
    from profilesync.store import open_store

    with open_store(".profilesync") as store:
        answer = query.segmentation(store, query.SegmentationQuery(
            events=["Purchase Completed"], group_by={"kind": "profile", "name": "Plan"}))
"""
