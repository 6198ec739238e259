"""Delta Lake: a directory of Delta tables read with delta-rs; CDC through the change data feed.

``spec`` declares the settings (no driver imported); ``warehouse`` holds the class.
"""
