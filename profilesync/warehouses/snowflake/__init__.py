"""Snowflake: CDC with CHANGES on tables with CHANGE_TRACKING = TRUE.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
