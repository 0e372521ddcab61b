"""The server's outbox: every event, in order, in SQLite (WAL) until the trainer acks it.

Rows are keyed by :func:`~trustfix.trainer.events.event_key`, so adding an event twice is a no-op
(at-least-once delivery with idempotent ids).  The outbox is bounded: past ``warn_rows`` it logs a
warning once, and at ``max_rows`` the oldest events are dropped (with a warning saying how many)
so a server that never meets a trainer cannot fill the disk.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from trustfix.trainer.db import checkpoint_in_background, open_wal
from trustfix.trainer.events import Event, EventError, decode_event, encode_event, event_key

log = logging.getLogger(__name__)


class Outbox:
    """Events waiting for the trainer's ack, in a SQLite file shared safely between threads."""

    def __init__(
        self,
        path: Path,
        max_rows: int = 200_000,
        warn_rows: int | None = None,
        checkpoint_every_s: float | None = None,
    ) -> None:
        """With ``checkpoint_every_s`` (``stream.wal_checkpoint_s``) a thread checkpoints the
        write-ahead log that often and no commit of :meth:`add` or :meth:`ack` waits for one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self.warn_rows = int(max_rows * 0.8) if warn_rows is None else warn_rows
        self._lock = threading.Lock()
        self._warned = False
        self.db = open_wal(path, timeout=30, autocommit=False)
        self.table = self.db.table("events")
        if not self.table.exists():
            self.table.create(
                {"seq": int, "key": str, "type": str, "created": float, "body": bytes},
                pk="seq",
            )
            self.table.create_index(["key"], unique=True)
        self._checkpoints = checkpoint_in_background(self.db, path, checkpoint_every_s)

    def add(self, event: Event) -> bool:
        """Store ``event`` (validated first); False when its key is already stored."""
        body = encode_event(event)
        with self._lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO events (key, type, created, body) VALUES (?, ?, ?, ?)",
                (event_key(event), type(event).__name__.lower(), event.time, body),
            )
            self.db.conn.commit()
            added = cursor.rowcount == 1
            if added:
                self._bound()
        return added

    def _bound(self) -> None:
        rows = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        if rows > self.max_rows:
            excess = rows - self.max_rows
            self.db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self.db.conn.commit()
            log.warning(
                "outbox %s full (%d events): dropped the %d oldest",
                self.path,
                self.max_rows,
                excess,
            )
        elif rows > self.warn_rows and not self._warned:
            self._warned = True
            log.warning(
                "outbox %s holds %d events (limit %d): is the trainer reachable?",
                self.path,
                rows,
                self.max_rows,
            )
        elif rows <= self.warn_rows:
            self._warned = False

    def pending(self, limit: int = 100) -> list[tuple[str, Event]]:
        """Up to ``limit`` unacked events, oldest first, as ``(key, event)``; rows that no longer
        validate are logged and skipped."""
        with self._lock:
            rows = self.db.execute(
                "SELECT key, body FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        out = []
        for key, body in rows:
            try:
                out.append((key, decode_event(body)))
            except EventError as error:
                log.warning("outbox row %s skipped: %s", key, error.reason)
        return out

    def pending_raw(self, after: int = 0, limit: int = 100) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` unacked rows with ``seq`` above ``after``, oldest first, as stored
        (encoded and validated when added): ``(seq, key, body)``, for sending as they are."""
        with self._lock:
            return self.db.execute(
                "SELECT seq, key, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()

    def ack(self, keys: list[str]) -> int:
        """Forget the events with these keys (the trainer has committed them); how many went."""
        with self._lock:
            cursor = self.db.conn.executemany(
                "DELETE FROM events WHERE key = ?", [(k,) for k in keys]
            )
            self.db.conn.commit()
            return cursor.rowcount

    def count(self) -> int:
        """Number of unacked events."""
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        """Stop the checkpoint thread (if any) and close the database."""
        if self._checkpoints is not None:
            self._checkpoints.stop()
        with self._lock:
            self.db.conn.close()
