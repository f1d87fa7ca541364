"""Repository-wide pytest setup: the harness plugin provides options, fixtures and markers."""

pytest_plugins = ["harness.pytest_plugin", "harness.pytest_e2e"]
