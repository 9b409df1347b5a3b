"""Shared pytest configuration.

Fixtures that start real components live in tests/fixtures/, one module each,
so that each part of the suite can own its own without touching this file.
"""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.hub_server",
    "tests.fixtures.octoprint_server",
    "tests.fixtures.virtual_printer",
    "tests.fixtures.tcp_proxy",
]
