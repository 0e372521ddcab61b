"""The outbox: durable, idempotent, ordered, bounded, and thread-safe."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from trustfix.server.outbox import Outbox
from trustfix.server.privacy import installation_key, pseudonym
from trustfix.trainer.events import Feedback, encode_event


def feedback(i: int) -> Feedback:
    return Feedback(
        id=f"f{i}",
        suggestion_id="s1",
        reviewer="r-1",
        role="developer",
        kind="accept",
        time=float(i),
    )


def test_events_kept_until_acked_and_survive_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert [box.add(feedback(i)) for i in range(5)] == [True] * 5
    assert box.add(feedback(2)) is False  # same id: stored once
    assert box.count() == 5
    assert [key for key, _ in box.pending(3)] == ["f0", "f1", "f2"]
    assert box.ack(["f0", "f1", "nope"]) == 2
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert [e for _, e in box.pending(10)] == [feedback(i) for i in (2, 3, 4)]
    mode = box.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    # as stored, for sending: (seq, key, encoded event), past a seq
    rows = box.pending_raw(0, 2)
    assert [key for _, key, _ in rows] == ["f2", "f3"] and rows[0][2] == encode_event(feedback(2))
    assert [key for _, key, _ in box.pending_raw(rows[-1][0], 10)] == ["f4"]
    box.close()


def test_a_thread_checkpoints_the_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, checkpoint_every_s=0.05)
    empty = path.stat().st_size
    for i in range(300):  # fewer pages than a commit would checkpoint on its own
        box.add(feedback(i))
    deadline = time.monotonic() + 20
    while path.stat().st_size == empty and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > empty, "nothing was copied from the log into the database"
    box.close()


def test_bounded_with_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_rows=10, warn_rows=5)
    with caplog.at_level(logging.WARNING):
        for i in range(13):
            box.add(feedback(i))
    assert box.count() == 10
    assert [k for k, _ in box.pending(1)] == ["f3"]
    assert any("holds 6 events" in r.message for r in caplog.records)
    assert any("dropped the 1 oldest" in r.message for r in caplog.records)
    box.close()


def test_corrupt_rows_are_skipped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.add(feedback(1))
    conn = sqlite3.connect(tmp_path / "o.sqlite")
    conn.execute(
        "INSERT INTO events (key, type, created, body) VALUES ('x', 'feedback', 0, ?)",
        (b'{"type": "feedback"}',),
    )
    conn.commit()
    conn.close()
    assert [k for k, _ in box.pending(10)] == ["f1"]
    box.close()


def test_concurrent_writers(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    threads = [
        threading.Thread(target=lambda j=j: [box.add(feedback(j * 100 + i)) for i in range(50)])
        for j in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box.count() == 200
    box.close()


def test_pseudonym_key_is_private_and_stable(tmp_path: Path) -> None:
    key = installation_key(tmp_path / "d")
    assert (tmp_path / "d" / "reviewer.key").stat().st_mode & 0o777 == 0o600
    assert installation_key(tmp_path / "d") == key
    a = pseudonym("ada", key)
    assert a == pseudonym(" ada ", key) and a != pseudonym("bob", key)
    assert a != pseudonym("ada", installation_key(tmp_path / "other"))
    assert a.startswith("r-") and len(a) == 34 and "ada" not in a
