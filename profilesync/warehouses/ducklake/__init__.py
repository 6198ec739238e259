"""DuckLake: CDC through table_changes between DuckLake snapshots.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
