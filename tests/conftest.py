"""Helpers shared by the test files: free loopback ports, a real trainer daemon process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

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


QUIET_TRAINER = {
    "encoders.text_encoder": "hashing",
    "encoders.code_encoder": "hashing",
    "stream.update_every": 10**9,
    "stream.min_samples": 10**9,
}
"""Settings of a trainer that stores and acks but never learns (hashing encoders, no updates)."""


def start_trainer(
    tmp_path: Path, port: int, pub: int, settings: Mapping[str, object] = QUIET_TRAINER
) -> subprocess.Popen:
    """``python -m trustfix.trainer`` on loopback with its store and checkpoints in ``tmp_path``."""
    overrides = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trustfix.trainer",
            "--store",
            str(tmp_path / "store.sqlite"),
            "--checkpoints",
            str(tmp_path / "ckpt"),
            "--endpoint",
            f"tcp://127.0.0.1:{port}",
            "--pub",
            f"tcp://127.0.0.1:{pub}",
            "--config",
            str(tmp_path / "none.toml"),
            "--log-level",
            "WARNING",
            *overrides,
        ],
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
