"""SQLite as trustfix uses it on both ends (the trainer's store, a server's outbox): opened in
WAL mode, written in explicit transactions, its write-ahead log checkpointed by a thread of its
own so that no commit waits for a checkpoint."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils


def open_wal(
    path: Path, synchronous: str = "NORMAL", timeout: float = 60.0, autocommit: bool = True
) -> sqlite_utils.Database:
    """A connection to ``path`` in WAL mode with ``PRAGMA synchronous``, shareable between
    threads (callers hold a lock of their own).  ``autocommit``: transactions only where
    :func:`transaction` opens them; otherwise Python's implicit ones, ended by ``commit()``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, check_same_thread=False, timeout=timeout, isolation_level=None if autocommit else ""
    )
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit connection (:func:`open_wal`); any
    exception (including KeyboardInterrupt) rolls back and propagates."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class WalCheckpointer:
    """A thread that copies a SQLite database's write-ahead log into it every ``every_s``
    seconds, on a connection of its own (PASSIVE: it never blocks a writer or a reader).  Give
    the writers ``PRAGMA wal_autocheckpoint=0`` and their commits never wait for a checkpoint
    (SQLite's default: the commit that fills 1000 pages copies them and syncs the database)."""

    def __init__(self, path: Path, every_s: float) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, every_s), name="trustfix-wal", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path, every_s: float) -> None:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            while not self._stopping.wait(every_s):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the thread (the next writer or opener checkpoints what is left)."""
        self._stopping.set()
        self._thread.join()


def checkpoint_in_background(
    db: sqlite_utils.Database, path: Path, every_s: float | None
) -> WalCheckpointer | None:
    """With ``every_s``, stop ``db``'s commits from checkpointing and start a
    :class:`WalCheckpointer` on ``path`` instead; None otherwise."""
    if every_s is None:
        return None
    db.execute("PRAGMA wal_autocheckpoint=0")
    return WalCheckpointer(path, every_s)
