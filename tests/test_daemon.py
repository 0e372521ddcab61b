"""The trainer daemon's ingest over real ZeroMQ sockets: acks after commit, idempotent ids,
every kind of bad message rejected and counted with the daemon still answering, CURVE."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import msgspec
import pytest
import zmq
import zmq.auth
from trustfix.trainer.admin import status
from trustfix.trainer.config import EncoderConfig, StreamConfig, TrustfixConfig
from trustfix.trainer.daemon import TrainerDaemon
from trustfix.trainer.events import encode_batch, encode_event, event_key
from trustfix.trainer.sample_events import event_stream, make_feedback, make_suggestion
from trustfix.trainer.store import TrainerStore
from trustfix.trainer.wire import (
    ACK,
    BATCH,
    ERROR,
    PING,
    PONG,
    PROTOCOL,
    TRUST,
    InsecureEndpointError,
    check_endpoint,
    curve_client,
    is_local,
    make_keys,
)

HASHING = TrustfixConfig(encoders=EncoderConfig(text_encoder="hashing", code_encoder="hashing"))
QUIET = StreamConfig(update_every=10**9, min_samples=10**9, max_message_bytes=8 * 1024 * 1024)


@pytest.fixture
def daemon(tmp_path: Path):
    d = TrainerDaemon(
        tmp_path / "store.sqlite",
        tmp_path / "ckpt",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        HASHING,
        QUIET,
    )
    thread = threading.Thread(target=d.serve_forever, daemon=True)
    thread.start()
    yield d
    d.stop()
    thread.join(60)
    assert not thread.is_alive()


def dealer(endpoint: str, keys: Path | None = None, name: str = "server") -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    curve_client(socket, keys, name)
    socket.connect(endpoint)
    return socket


def ask(socket: zmq.Socket, *frames: bytes, timeout: float = 5.0) -> list[bytes]:
    socket.send_multipart(list(frames))
    assert socket.poll(int(timeout * 1000)), "the daemon did not answer"
    return socket.recv_multipart()


def wait_for_rejects(store: TrainerStore, expected: dict[str, int], timeout: float = 5.0) -> dict:
    """``trustfix status``'s reject counts once they reach ``expected`` (they are written at
    most every ``stream.reject_flush_s``), or as they are at ``timeout``."""
    deadline = time.monotonic() + timeout
    while (rejects := status(store)["rejects"]) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return rejects


CLEAN = {"rejected": {}, "rejected_total": 0, "rejected_by_reason": {}}


def send_batch(socket: zmq.Socket, events, batch_id: bytes = b"b1") -> dict:
    reply = ask(socket, PROTOCOL, BATCH, batch_id, encode_batch([encode_event(e) for e in events]))
    assert reply[:3] == [PROTOCOL, ACK, batch_id]
    return msgspec.json.decode(reply[3])


def test_batch_is_committed_before_its_ack_and_stored_once(daemon: TrainerDaemon, tmp_path: Path):
    events = event_stream(30)
    socket = dealer(daemon.endpoint)
    report = send_batch(socket, events)
    assert report == {"stored": 30, "duplicates": 0, **CLEAN}
    # another connection sees the rows as soon as the ack is in: the commit came first
    reader = TrainerStore(tmp_path / "store.sqlite")
    assert reader.keys() == [event_key(e) for e in events]
    assert send_batch(socket, events[10:], b"b2") == {"stored": 0, "duplicates": 20, **CLEAN}
    assert reader.count() == 30
    socket.close()


def test_every_bad_message_is_rejected_counted_and_the_daemon_lives(daemon: TrainerDaemon):
    socket = dealer(daemon.endpoint)
    good = encode_event(make_suggestion(1))
    bad_version = good.replace(b'"v":1', b'"v":2')
    assert bad_version != good
    # one batch with an invalid, a wrong-version and a non-object event: the good one is stored
    report = send_batch(socket, [make_suggestion(0)])
    reply = ask(
        socket,
        PROTOCOL,
        BATCH,
        b"mixed",
        encode_batch([b'{"type":"vote"}', good, bad_version, b"3"]),
    )
    report = msgspec.json.decode(reply[3])
    assert report["stored"] == 1
    assert sorted(report["rejected"]) == ["0", "2", "3"]
    assert report["rejected"]["0"].startswith("invalid")
    assert report["rejected"]["2"].startswith("version")
    assert report["rejected"]["3"].startswith("invalid")
    assert report["rejected_total"] == 3 and report["rejected_by_reason"] == {
        "invalid": 2,
        "version": 1,
    }
    # whole messages that cannot be handled
    cases = [
        ((PROTOCOL,), "truncated"),
        ((PROTOCOL, BATCH, b"no-events"), "truncated"),
        ((PROTOCOL, BATCH, b"empty", b"[]"), "truncated"),
        ((PROTOCOL, BATCH, b"bad-json", encode_batch([good, b"{not json"])), "malformed"),
        ((PROTOCOL, BATCH, b"frames", good, good), "malformed"),  # one frame per event: v1
        ((b"7", BATCH, b"x", good), "protocol-version"),
        ((PROTOCOL, b"launch", b"x"), "unknown-kind"),
        ((PROTOCOL, BATCH, b"big", b"x" * (10 * 1024 * 1024)), "oversized"),
        ((PROTOCOL, b"chunk", b"not-a-number", b"0"), "malformed"),
        ((PROTOCOL, TRUST, b"r-a", b"r-b"), "malformed"),
        # frames missing or too many after a known kind: no IndexError, the id still echoed
        ((PROTOCOL, b"meta"), "truncated"),
        ((PROTOCOL, b"chunk", b"1"), "truncated"),
        ((PROTOCOL, b"meta", b"1", b"2"), "malformed"),
        ((PROTOCOL, b"chunk", b"1", b"-5"), "malformed"),  # no such version
        ((PROTOCOL, TRUST, b"\xff\xfe"), "malformed"),  # not UTF-8
        # hostile JSON: nested past any recursion limit, more elements than a batch may hold
        ((PROTOCOL, BATCH, b"deep", b"[" * 100_000 + b"]" * 100_000), "malformed"),
        ((PROTOCOL, BATCH, b"wide", b"[" + b",".join([b"1"] * 500_000) + b"]"), "oversized"),
    ]
    for frames, reason in cases:
        reply = ask(socket, *frames)
        assert reply[1] == ERROR and reply[3].decode().startswith(reason), (frames[:2], reply)
        assert reply[2] == (frames[2][:64] if len(frames) > 2 else b""), "the id is echoed"
    rejects = wait_for_rejects(
        daemon.store,
        {
            "invalid": 2,
            "malformed": 8,
            "version": 1,
            "truncated": 5,
            "protocol-version": 1,
            "unknown-kind": 1,
            "oversized": 2,
        },
    )
    assert rejects == {
        "invalid": 2,
        "malformed": 8,
        "version": 1,
        "truncated": 5,
        "protocol-version": 1,
        "unknown-kind": 1,
        "oversized": 2,
    }
    # still alive, answering and storing
    assert ask(socket, PROTOCOL, PING)[:2] == [PROTOCOL, PONG]
    assert send_batch(socket, [make_feedback(9, "s1")], b"after")["stored"] == 1
    assert daemon.store.count() == 3
    socket.close()


def test_reply_to_a_batch_of_many_bad_events_stays_small(daemon: TrainerDaemon):
    socket = dealer(daemon.endpoint)
    bad = [b'{"type":"vote","n":%d}' % i for i in range(3000)]
    frame = encode_batch([encode_event(make_suggestion(0)), *bad])
    reply = ask(socket, PROTOCOL, BATCH, b"many", frame)
    report = msgspec.json.decode(reply[3])
    assert report["stored"] == 1 and report["rejected_total"] == 3000
    assert report["rejected_by_reason"] == {"invalid": 3000}
    assert len(report["rejected"]) == QUIET.max_reply_rejects
    assert len(reply[3]) < 20_000 < len(frame)
    assert wait_for_rejects(daemon.store, {"invalid": 3000}) == {"invalid": 3000}
    socket.close()


def test_a_flooding_peer_does_not_starve_another(daemon: TrainerDaemon):
    """While one peer has the costliest batches it may send queued, another's ping is answered
    after at most a few of them: ZeroMQ queues peers fairly and no message costs long."""
    flood = dealer(daemon.endpoint)
    frame = b"[" + b",".join([b"1"] * QUIET.max_batch_events) + b"]"  # max elements, all invalid
    other = dealer(daemon.endpoint)
    assert ask(other, PROTOCOL, PING)[:2] == [PROTOCOL, PONG]  # connected before the flood
    for i in range(30):
        flood.send_multipart([PROTOCOL, BATCH, b"f%d" % i, frame])
    assert flood.poll(30_000)  # the flood is being handled
    for _ in range(3):
        assert ask(other, PROTOCOL, PING, timeout=30)[:2] == [PROTOCOL, PONG]
        waiting = 0
        while flood.poll(0):
            flood.recv_multipart()
            waiting += 1
        assert waiting <= 4, "the ping waited for the flooding peer's queue"
    flood.close()
    other.close()


def test_off_loopback_needs_keys(tmp_path: Path):
    assert is_local("tcp://127.0.0.1:5555") and is_local("tcp://[::1]:1") and is_local("ipc:///x")
    assert not is_local("tcp://0.0.0.0:5555") and not is_local("tcp://10.1.2.3:5555")
    with pytest.raises(InsecureEndpointError, match="trustfix keys"):
        check_endpoint("tcp://0.0.0.0:5555", None, "bind")
    with pytest.raises(InsecureEndpointError, match="without CURVE keys"):
        TrainerDaemon(
            tmp_path / "s.sqlite",
            tmp_path / "c",
            "tcp://0.0.0.0:0",
            "tcp://127.0.0.1:0",
            HASHING,
            QUIET,
        )
    check_endpoint("tcp://0.0.0.0:5555", tmp_path, "bind")  # with keys: allowed


def test_curve_admits_listed_keys_only(tmp_path: Path):
    keys = tmp_path / "keys"
    make_keys(keys, "server")
    stranger = tmp_path / "stranger"
    make_keys(stranger, "server")  # a valid key pair the trainer does not list
    for name in ("trainer.key", "trainer.key_secret"):  # same trainer key, so only ZAP refuses
        (stranger / name).write_bytes((keys / name).read_bytes())
    d = TrainerDaemon(
        tmp_path / "store.sqlite",
        tmp_path / "ckpt",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        HASHING,
        QUIET,
        keys=keys,
    )
    thread = threading.Thread(target=d.serve_forever, daemon=True)
    thread.start()
    try:
        intruder = dealer(d.endpoint, stranger)
        plain = dealer(d.endpoint)  # no CURVE at all
        for socket, n in ((intruder, 5), (plain, 6)):
            try:  # never blocks: with no handshake there may be no peer to queue for
                socket.send_multipart(
                    [PROTOCOL, BATCH, b"x", encode_batch([encode_event(make_suggestion(n))])],
                    zmq.NOBLOCK,
                )
            except zmq.Again:
                pass
        friend = dealer(d.endpoint, keys)
        assert send_batch(friend, [make_suggestion(7)])["stored"] == 1
        deadline = time.monotonic() + 5
        while d.store.rejects().get("unauthenticated", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.store.rejects().get("unauthenticated", 0) >= 2
        # the plain peer retries its handshake every ~100 ms: counted, but written at most
        # every reject_flush_s (one commit for many attempts), never one write per attempt
        writes = d.store.db.conn.total_changes
        time.sleep(1.5)
        assert d.store.db.conn.total_changes - writes <= 3
        assert not intruder.poll(200) and not plain.poll(10)
        assert d.store.keys() == ["s7@0"]
        for s in (intruder, plain, friend):
            s.close()
    finally:
        d.stop()
        thread.join(60)


def test_second_daemon_on_the_same_store_is_refused(daemon: TrainerDaemon, tmp_path: Path):
    with pytest.raises(RuntimeError, match="another trainer"):
        TrainerDaemon(
            tmp_path / "store.sqlite",
            tmp_path / "ckpt",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:0",
            HASHING,
            QUIET,
        )


def test_status_counts(daemon: TrainerDaemon):
    socket = dealer(daemon.endpoint)
    send_batch(socket, event_stream(9))
    report = status(daemon.store)
    assert (report["events"], report["suggestions"], report["feedback"]) == (9, 3, 6)
    assert report["latest_version"] is None and report["rejects"] == {}
    json.dumps(report)
    socket.close()


def test_keys_and_train_commands(tmp_path: Path):
    from trustfix.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    out = runner.invoke(app, ["keys", str(tmp_path / "keys")])
    assert out.exit_code == 0, out.output
    for name in (
        "trainer.key",
        "trainer.key_secret",
        "server.key",
        "server.key_secret",
        "allowed/server.key",
    ):
        assert (tmp_path / "keys" / name).is_file(), name
    assert (tmp_path / "keys" / "server.key_secret").stat().st_mode & 0o077 == 0
    out = runner.invoke(app, ["keys", str(tmp_path / "keys"), "--name", "laptop"])
    assert (tmp_path / "keys" / "allowed" / "laptop.key").is_file()
    assert zmq.auth.load_certificate(tmp_path / "keys" / "trainer.key_secret")[1] is not None
    out = runner.invoke(
        app,
        [
            "train",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--checkpoints",
            str(tmp_path / "c"),
            "--endpoint",
            "tcp://0.0.0.0:0",
        ],
    )
    assert out.exit_code == 2 and "without CURVE keys" in out.output
