"""The trainer's SQLite store (sqlite-utils, WAL): events, rejects, estimator state, versions.

- ``events``: every accepted event once, keyed by :func:`~trustfix.trainer.events.event_key`
  (``INSERT OR IGNORE``: a resent event is stored once), numbered by an AUTOINCREMENT ``seq``
  that the learner follows; one transaction per received batch.
- ``rejects``: counts by reason category, with the last detail.
- in a second file (:func:`learner_path`), written only by the learner so that its large saves
  never hold up ingest: ``estimator``, the confidence estimator's ``to_rows()`` tables, one JSON
  row each (types kept exactly), saved in one transaction together with ``state``
  (``processed_seq``, ``trained_seq``, ...).
- ``policy_versions`` and ``metrics``: each published version and each update's diagnostics.
- ``forget_requests``: reviewers to forget, applied by the daemon when it runs.
"""

from __future__ import annotations

import fcntl
import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import sqlite_utils

from .db import checkpoint_in_background, open_wal, transaction
from .events import Event, Suggestion, decode_event, event_key

DISCONNECTED = "disconnected"
"""Reason under which ``rejects`` counts connections closed or dropped (libzmq drops one that
sends a frame over ``stream.hard_limit_bytes`` and reports it only as a disconnect); not a
rejected message, so ``trustfix status`` shows it apart."""

Buffer = bytes | msgspec.Raw
"""An event's JSON as received: bytes, or a slice of a batch frame."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    suggestion_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    revision INTEGER NOT NULL,
    received REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_reviewer ON events (reviewer);
CREATE INDEX IF NOT EXISTS events_suggestion ON events (suggestion_id, revision)
    WHERE type = 'suggestion';
CREATE TABLE IF NOT EXISTS rejects (reason TEXT PRIMARY KEY, count INTEGER NOT NULL,
                                    last_detail TEXT, last_time REAL);
CREATE TABLE IF NOT EXISTS policy_versions (version INTEGER PRIMARY KEY, sha256 TEXT NOT NULL,
                                            size INTEGER NOT NULL, path TEXT NOT NULL,
                                            created REAL NOT NULL, samples INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (update_no INTEGER PRIMARY KEY, time REAL NOT NULL,
                                    version INTEGER NOT NULL, diagnostics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forget_requests (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                            reviewer TEXT NOT NULL, time REAL NOT NULL,
                                            applied INTEGER NOT NULL DEFAULT 0);
"""
_LEARNER_SCHEMA = """
CREATE TABLE IF NOT EXISTS estimator (tbl TEXT NOT NULL, n INTEGER NOT NULL, row TEXT NOT NULL,
                                      PRIMARY KEY (tbl, n));
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def learner_path(path: Path) -> Path:
    """The learner's file beside a store: ``store.sqlite`` -> ``store.learner.sqlite``."""
    return path.with_name(f"{path.stem}.learner{path.suffix}")


def _open(path: Path, synchronous: str, schema: str) -> sqlite_utils.Database:
    db = open_wal(path, synchronous)
    db.conn.executescript(schema)
    return db


def hold_store_lock(store_path: Path) -> IO[bytes]:
    """Lock ``STORE.lock`` for this process's lifetime (the kernel drops it if the process dies);
    RuntimeError when another trainer holds it."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(store_path.with_name(store_path.name + ".lock"), "wb")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another trainer is running on {store_path}") from None
    return handle


def _row_values(event: Event, received: float) -> tuple[Any, ...]:
    if isinstance(event, Suggestion):
        return (
            event_key(event),
            "suggestion",
            event.id,
            event.id,
            event.reviewer,
            event.revision,
            received,
        )
    return (
        event_key(event),
        "feedback",
        event.id,
        event.suggestion_id,
        event.reviewer,
        0,
        received,
    )


class TrainerStore:
    """One connection to the trainer's store; safe to share between threads (one lock)."""

    def __init__(
        self, path: Path, synchronous: str = "NORMAL", checkpoint_every_s: float | None = None
    ) -> None:
        """With ``checkpoint_every_s`` a :class:`~trustfix.trainer.db.WalCheckpointer`
        checkpoints the events' write-ahead log that often, and this connection's commits
        (ingest's) never do."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self.db = _open(path, synchronous, _SCHEMA)
        self.learner_db = _open(learner_path(path), synchronous, _LEARNER_SCHEMA)
        self._checkpoints = checkpoint_in_background(self.db, path, checkpoint_every_s)

    # ------------------------------------------------------------ events

    def add_batch(
        self, events: Iterable[tuple[Event, Buffer]], rejects: Iterable[tuple[str, str]] = ()
    ) -> int:
        """Store ``(event, body)`` pairs (``body`` the event's JSON bytes, or any buffer of them)
        and count ``(reason, detail)`` rejects in one transaction; returns how many events were
        new.  Returns only after the commit."""
        now = time.time()
        rows = [(*_row_values(event, now), body) for event, body in events]
        totals: dict[str, tuple[int, str]] = {}
        for reason, detail in rejects:
            totals[reason] = (totals.get(reason, (0, ""))[0] + 1, detail)
        with self._lock, transaction(self.db.conn) as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (key, type, event_id, suggestion_id, reviewer, "
                "revision, received, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
            self._count_rejects(((r, n, d) for r, (n, d) in totals.items()), now)
        return added

    def _count_rejects(self, rejects: Iterable[tuple[str, int, str]], now: float) -> None:
        self.db.conn.executemany(
            "INSERT INTO rejects (reason, count, last_detail, last_time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count, "
            "last_detail = excluded.last_detail, last_time = excluded.last_time",
            [(reason, n, detail[:500], now) for reason, n, detail in rejects],
        )

    def count_rejects(self, totals: dict[str, tuple[int, str]]) -> None:
        """Add ``{reason: (count, last detail)}`` to the reject counts (one transaction)."""
        with self._lock, transaction(self.db.conn):
            self._count_rejects(((r, n, d) for r, (n, d) in totals.items()), time.time())

    def rejects(self) -> dict[str, int]:
        """Reject counts by reason."""
        with self._lock:
            return dict(
                self.db.execute("SELECT reason, count FROM rejects ORDER BY reason").fetchall()
            )

    def count(self, kind: str | None = None) -> int:
        """Number of stored events (of one type: ``suggestion`` or ``feedback``)."""
        with self._lock:
            if kind is None:
                return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return self.db.execute(
                "SELECT COUNT(*) FROM events WHERE type = ?", (kind,)
            ).fetchone()[0]

    def keys(self) -> list[str]:
        """Every stored event key, in arrival order."""
        with self._lock:
            return [k for (k,) in self.db.execute("SELECT key FROM events ORDER BY seq")]

    def events_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Event]]:
        """Up to ``limit`` stored events with ``seq`` greater than ``seq``, in order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [(s, decode_event(body)) for s, body in rows]

    def raw_events_after(self, seq: int, limit: int = 1000) -> list[tuple[int, str, bytes]]:
        """Like :meth:`events_after`, undecoded: ``(seq, suggestion id, body)``."""
        with self._lock:
            return self.db.execute(
                "SELECT seq, suggestion_id, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()

    def event(self, key: str) -> Event | None:
        """The stored event with this key."""
        with self._lock:
            row = self.db.execute("SELECT body FROM events WHERE key = ?", (key,)).fetchone()
        return None if row is None else decode_event(row[0])

    def max_seq(self) -> int:
        """The newest event's ``seq`` (0 when empty)."""
        with self._lock:
            return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def suggestion(self, suggestion_id: str) -> Suggestion | None:
        """The highest stored revision of a suggestion."""
        with self._lock:
            row = self.db.execute(
                "SELECT body FROM events WHERE suggestion_id = ? AND type = 'suggestion' "
                "ORDER BY revision DESC LIMIT 1",
                (suggestion_id,),
            ).fetchone()
        return None if row is None else decode_event(row[0])  # type: ignore[return-value]

    def reviewer_events(self, reviewer: str) -> Iterator[Event]:
        """Every stored event of one reviewer, in arrival order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT body FROM events WHERE reviewer = ? ORDER BY seq", (reviewer,)
            ).fetchall()
        return (decode_event(body) for (body,) in rows)

    def delete_reviewer(self, reviewer: str) -> int:
        """Delete every event of one reviewer; how many went."""
        with self._lock:
            cursor = self.db.execute("DELETE FROM events WHERE reviewer = ?", (reviewer,))
            return cursor.rowcount

    # ------------------------------------------------------------ state

    def get_state(self, key: str, default: Any = None) -> Any:
        """A JSON value from the ``state`` table."""
        with self._lock:
            row = self.learner_db.execute(
                "SELECT value FROM state WHERE key = ?", (key,)
            ).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, **values: Any) -> None:
        """Set JSON values in the ``state`` table."""
        with self._lock:
            self.learner_db["state"].upsert_all(
                [{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key"
            )

    def save_estimator(self, rows: dict[str, list[dict[str, Any]]], **state: Any) -> None:
        """Replace the estimator's tables (``ConfidenceEstimator.to_rows()``) and set ``state``
        values, in one transaction."""
        flat = [
            (tbl, n, json.dumps(row)) for tbl, table in rows.items() for n, row in enumerate(table)
        ]
        with self._lock, transaction(self.learner_db.conn) as conn:
            conn.execute("DELETE FROM estimator")
            conn.executemany("INSERT INTO estimator (tbl, n, row) VALUES (?, ?, ?)", flat)
            conn.executemany(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in state.items()],
            )

    def reviewer_trust(self, reviewer: str) -> dict[str, float] | None:
        """One reviewer's saved Beta state, ``{alpha, beta, theta, count}`` (None when unknown),
        without loading the rest of the estimator."""
        with self._lock:
            row = self.learner_db.execute(
                "SELECT row FROM estimator WHERE tbl = 'reviewers' "
                "AND json_extract(row, '$.reviewer') = ?",
                (reviewer,),
            ).fetchone()
        if row is None:
            return None
        state = json.loads(row[0])
        alpha, beta = state["alpha"], state["beta"]
        return {
            "alpha": alpha,
            "beta": beta,
            "theta": alpha / (alpha + beta),
            "count": state["count"],
        }

    def load_estimator_rows(self) -> dict[str, list[dict[str, Any]]] | None:
        """The saved estimator tables, or None when none were saved."""
        with self._lock:
            rows = self.learner_db.execute(
                "SELECT tbl, row FROM estimator ORDER BY tbl, n"
            ).fetchall()
        if not rows:
            return None
        tables: dict[str, list[dict[str, Any]]] = {
            t: [] for t in ("meta", "items", "reviewers", "updates", "executions", "f_phi")
        }
        for tbl, row in rows:
            tables.setdefault(tbl, []).append(json.loads(row))
        return tables

    # ------------------------------------------------------------ versions and metrics

    def add_version(
        self,
        version: int,
        sha256: str,
        size: int,
        path: str,
        samples: int,
        diagnostics: dict[str, float],
    ) -> None:
        """Record a published version and its update's diagnostics (one transaction)."""
        now = time.time()
        clean = {k: (None if math.isnan(v) else v) for k, v in diagnostics.items()}
        with self._lock, transaction(self.db.conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO policy_versions VALUES (?, ?, ?, ?, ?, ?)",
                (version, sha256, size, path, now, samples),
            )
            conn.execute(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                (int(diagnostics.get("update", version)), now, version, json.dumps(clean)),
            )

    def versions(self) -> list[dict[str, Any]]:
        """Every published version, oldest first."""
        with self._lock:
            return list(self.db["policy_versions"].rows_where(order_by="version"))

    def metrics(self) -> list[dict[str, Any]]:
        """Every update's diagnostics, oldest first."""
        with self._lock:
            return [
                {**json.loads(r["diagnostics"]), "version": r["version"], "time": r["time"]}
                for r in self.db["metrics"].rows_where(order_by="update_no")
            ]

    # ------------------------------------------------------------ forgetting

    def request_forget(self, reviewer: str) -> int:
        """Delete one reviewer's events now and queue the estimator's forgetting (one
        transaction); how many events went."""
        with self._lock, transaction(self.db.conn) as conn:
            deleted = conn.execute("DELETE FROM events WHERE reviewer = ?", (reviewer,)).rowcount
            conn.execute(
                "INSERT INTO forget_requests (reviewer, time) VALUES (?, ?)",
                (reviewer, time.time()),
            )
        return deleted

    def pending_forgets(self) -> list[tuple[int, str]]:
        """Forget requests not yet applied to the estimator: ``(id, reviewer)``."""
        with self._lock:
            return self.db.execute(
                "SELECT id, reviewer FROM forget_requests WHERE applied = 0 ORDER BY id"
            ).fetchall()

    def mark_forgotten(self, request_ids: list[int]) -> None:
        """Mark forget requests as applied."""
        with self._lock:
            self.db.conn.executemany(
                "UPDATE forget_requests SET applied = 1 WHERE id = ?", [(i,) for i in request_ids]
            )

    def close(self) -> None:
        """Stop the checkpoint thread (if any) and close the connections."""
        if self._checkpoints is not None:
            self._checkpoints.stop()
        with self._lock:
            self.db.conn.close()
            self.learner_db.conn.close()
