"""PostgreSQL: snapshots by COPY in an exported snapshot, CDC through a logical replication slot.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
