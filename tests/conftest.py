"""Shared pytest configuration.

Fixtures that start real components live in tests/fixtures/, one module each,
so that each part of the suite can own its own without touching this file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.hub_server",
    "tests.fixtures.octoprint_server",
    "tests.fixtures.virtual_printer",
    "tests.fixtures.tcp_proxy",
]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a command's main in-process (spime-hub sets up the process's logging, with a
    handler on the stderr pytest captured for that test) leaves the root logger as it found it, so
    that later tests in the same worker do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
