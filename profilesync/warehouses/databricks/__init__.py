"""Databricks SQL warehouses: CDC with table_changes on tables with the change data feed on.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
