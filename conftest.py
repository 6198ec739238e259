"""Root pytest configuration: shared fixture plugins for the whole suite."""

pytest_plugins = ["tests.postgres_server"]
