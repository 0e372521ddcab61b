"""Helpers shared by the test files: free loopback ports."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def pick_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a free loopback port (a new one each call)."""
    return pick_free_port
