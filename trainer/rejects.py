"""Rejected messages as the trainer daemon counts them: in memory, written to the store in one
transaction at most every ``stream.reject_flush_s``, each reason logged at most every
``stream.reject_log_every_s``."""

from __future__ import annotations

import logging
import math
import time

from .store import TrainerStore

log = logging.getLogger(__name__)


class RejectTally:
    """Rejected messages counted in memory and added to the store's counts at most every
    ``flush_s`` seconds (the first after a quiet spell at once), so that a flood of bad
    messages or refused handshakes costs no commit each; each reason is logged at most every
    ``log_every_s`` seconds, with the number left unlogged in between."""

    def __init__(self, store: TrainerStore, flush_s: float, log_every_s: float) -> None:
        self.store, self.flush_s, self.log_every_s = store, flush_s, log_every_s
        self.pending: dict[str, tuple[int, str]] = {}
        """Per reason, (count, last detail) not yet in the store."""
        self._flushed = -math.inf
        self._logged: dict[str, tuple[float, int]] = {}
        """Per reason, (when it was last logged, how many since went unlogged)."""

    def add(self, reason: str, detail: str, level: int = logging.WARNING) -> None:
        """Count one reject; log it unless its reason was logged within ``log_every_s``."""
        count, _ = self.pending.get(reason, (0, ""))
        self.pending[reason] = (count + 1, detail)
        self.log(reason, f"rejected: {reason} ({detail[:200]})", level)
        self.flush()

    def log(self, key: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` unless one of the same ``key`` was logged within ``log_every_s``."""
        now = time.monotonic()
        last, unlogged = self._logged.get(key, (-math.inf, 0))
        if now - last >= self.log_every_s:
            more = f" (and {unlogged} more since the last such message)" if unlogged else ""
            log.log(level, "%s%s", message, more)
            self._logged[key] = (now, 0)
        else:
            self._logged[key] = (last, unlogged + 1)

    def flush(self, force: bool = False) -> None:
        """Write the pending counts (one transaction) when ``flush_s`` has passed or ``force``."""
        now = time.monotonic()
        if self.pending and (force or now - self._flushed >= self.flush_s):
            self.store.count_rejects(self.pending)
            self.pending = {}
            self._flushed = now
