"""A DuckDB database file, synced by snapshot diff; also the shared DuckDB helpers.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
