"""Reviewer privacy: keyed pseudonyms and telemetry levels.

A reviewer id never leaves the editor in clear: it is replaced by HMAC-SHA256 under a random
per-installation key, kept in the trustfix data folder with 0600 permissions.  The same person
gets the same pseudonym on one installation, and nobody without the key can test a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Literal, get_args

Telemetry = Literal["off", "noCode", "all"]
"""off: record nothing; noCode: ids, hashes and features but no source text; all: everything."""

TELEMETRY_LEVELS: tuple[str, ...] = get_args(Telemetry)
KEY_FILE = "reviewer.key"
"""Name of the per-installation key file inside the data folder."""


def default_data_dir() -> Path:
    """``$TRUSTFIX_DATA_DIR``, else ``$XDG_DATA_HOME/trustfix``, else ``~/.local/share/trustfix``."""
    if os.environ.get("TRUSTFIX_DATA_DIR"):
        return Path(os.environ["TRUSTFIX_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "trustfix"


def installation_key(data_dir: Path) -> bytes:
    """The installation's 32-byte key, created (mode 0600, never overwritten) on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(
                f"{path} is truncated ({len(key)} bytes); delete it to make a new key"
            ) from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def pseudonym(reviewer_id: str, key: bytes) -> str:
    """The stored form of a reviewer id: ``r-`` and 32 hex digits of HMAC-SHA256(key, id)."""
    digest = hmac.new(key, reviewer_id.strip().encode(), hashlib.sha256).hexdigest()
    return "r-" + digest[:32]
