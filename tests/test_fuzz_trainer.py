"""Hostile input against a real ``trustfix train`` on loopback: a seeded, bounded fuzzer sends
requests of every kind an adversarial peer could, and the trainer must stay up, answer every
request within a deadline, keep its memory bounded, count every reject under its reason (never
``internal``), and afterwards store valid events exactly once.

Size: ``TRUSTFIX_FUZZ_REQUESTS`` hostile requests (default 400, about a minute here) with seed
``TRUSTFIX_FUZZ_SEED``; e.g. ``TRUSTFIX_FUZZ_REQUESTS=20000 pytest tests/test_fuzz_trainer.py -s``
for a long run.  ``-s`` prints the requests tried and their outcomes per category.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import zmq
from conftest import QUIET_TRAINER, start_trainer
from trustfix.trainer.admin import status
from trustfix.trainer.events import encode_batch, encode_event, event_key
from trustfix.trainer.sample_events import event_stream, make_suggestion
from trustfix.trainer.store import TrainerStore
from trustfix.trainer.wire import ACK, BATCH, CHUNK, ERROR, META, PING, PROTOCOL, TRUST

REQUESTS = int(os.environ.get("TRUSTFIX_FUZZ_REQUESTS", "400"))
SEED = int(os.environ.get("TRUSTFIX_FUZZ_SEED", "16"))
DEADLINE_S = 15.0
"""Longest wait for any one answer (the test machine is shared and slow)."""
RSS_GROWTH_MB = 300
"""Most the trainer's resident memory may grow over the hostile input."""
MAX_MESSAGE = 1 << 20
HARD_LIMIT = 4 << 20
MAX_EVENTS = 2000
SETTINGS = {
    **QUIET_TRAINER,
    "stream.max_message_bytes": MAX_MESSAGE,
    "stream.hard_limit_bytes": HARD_LIMIT,
    "stream.max_batch_events": MAX_EVENTS,
}
GOOD = encode_event(make_suggestion(10**6, "r-fuzz"))
"""A valid event the fuzzer mutates (an id the valid stream afterwards does not use)."""


def _json_value(rng: random.Random, depth: int = 0) -> object:
    """A random JSON value: scalars, long or odd strings, small nested containers."""
    pick = rng.randrange(8 if depth < 3 else 5)
    if pick == 0:
        return rng.choice([None, True, False])
    if pick == 1:
        return rng.choice([0, -1, 2**63, -(2**70), rng.randrange(-(10**6), 10**6)])
    if pick == 2:
        return rng.choice([1e308, -0.0, 3.5])
    if pick == 3:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(0, 40)))
    if pick == 4:
        return "x" * rng.randrange(0, 5000)
    if pick == 5:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {
        rng.choice(["type", "id", "v", "kind", "reviewer", "score", "x"]): _json_value(
            rng, depth + 1
        )
        for _ in range(rng.randrange(0, 6))
    }


def _mutated_event(rng: random.Random) -> bytes:
    """A valid event with one field replaced by a random value, or one field dropped."""
    event = json.loads(GOOD)
    key = rng.choice(sorted(event))
    if rng.random() < 0.3:
        del event[key]
    else:
        event[key] = _json_value(rng)
    return json.dumps(event).encode()


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


# Each category: (frames after the identity, the error reason expected or "ack" / "pong" / "meta"
# / "chunk" / "trust" / "dropped" for a connection ZeroMQ drops).
Request = tuple[list[bytes], str]


def wrong_protocol(rng: random.Random) -> Request:
    return [rng.choice([b"1", b"3", b"", _bytes(rng, 8)]), BATCH, b"id", GOOD], "protocol-version"


def truncated(rng: random.Random) -> Request:
    return rng.choice(
        [
            ([PROTOCOL], "truncated"),
            ([PROTOCOL, BATCH], "truncated"),
            ([PROTOCOL, BATCH, b"id"], "truncated"),
            ([PROTOCOL, META], "truncated"),
            ([PROTOCOL, CHUNK, b"1"], "truncated"),
            ([PROTOCOL, TRUST], "truncated"),
            ([PROTOCOL, BATCH, b"id", b"[]"], "truncated"),
        ]
    )


def unknown_kind(rng: random.Random) -> Request:
    kind = rng.choice([b"batches", b"", b"ACK", _bytes(rng, rng.randrange(1, 64))])
    if kind in (BATCH, META, CHUNK, TRUST, PING):
        kind = b"nope"
    return [PROTOCOL, kind, b"id"], "unknown-kind"


def too_many_frames(rng: random.Random) -> Request:
    kind = rng.choice([BATCH, META, CHUNK, TRUST])
    frames = [PROTOCOL, kind, b"id", *[b"1"] * rng.randrange(3, 1000)]
    return frames, "malformed"


def garbage_batch(rng: random.Random) -> Request:
    frame = rng.choice(
        [
            _bytes(rng, rng.randrange(1, 4000)),
            b"{}",
            b'"s"',
            b"[1,",
            b"[" + GOOD,
            b"\x00" * 100,
            b'["\\ud800"]',
        ]
    )  # last: a lone surrogate
    return [PROTOCOL, BATCH, b"g%d" % rng.randrange(10**6), frame], "malformed"


def bad_events(rng: random.Random) -> Request:
    """A JSON array of mutated events and random values: an ack, each bad element counted."""
    items = [
        _mutated_event(rng) if rng.random() < 0.6 else json.dumps(_json_value(rng)).encode()
        for _ in range(rng.randrange(1, 300))
    ]
    return [PROTOCOL, BATCH, b"e%d" % rng.randrange(10**6), encode_batch(items)], "ack"


def deep_nesting(rng: random.Random) -> Request:
    depth = rng.choice([1000, 5000, 100_000, 400_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    frame = b"[" + opener * depth + b"1" + closer * depth + b"]"
    if len(frame) > MAX_MESSAGE:
        return [PROTOCOL, BATCH, b"deep", frame], "oversized"
    return [PROTOCOL, BATCH, b"deep", frame], "malformed"


def wide_batch(rng: random.Random) -> Request:
    n = rng.choice([MAX_EVENTS + 1, 50_000, 300_000])
    element = rng.choice([b"1", b"{}", b"[]", b'""'])
    frame = b"[" + b",".join([element] * n) + b"]"
    return [PROTOCOL, BATCH, b"wide", frame], "oversized"  # too many elements, or bytes


def oversized(rng: random.Random) -> Request:
    return [PROTOCOL, BATCH, b"big", b" " * (MAX_MESSAGE + rng.randrange(1, 1 << 20))], "oversized"


def weights_request(rng: random.Random) -> Request:
    version = rng.choice([b"0", b"1", b"-1", b"abc", b"9" * 5000, b"1e9", b"", _bytes(rng, 6)])
    if rng.random() < 0.5:
        return [PROTOCOL, META, version], "malformed"
    offset = rng.choice([b"0", b"-5", b"9" * 30, b"x"])
    return [PROTOCOL, CHUNK, version, offset], "malformed"


def trust_request(rng: random.Random) -> Request:
    reviewer = rng.choice([b"r-fuzz", b"", _bytes(rng, rng.randrange(1, 200)), b"r" * 100_000])
    try:
        reviewer.decode()
    except UnicodeDecodeError:
        return [PROTOCOL, TRUST, reviewer], "malformed"
    return [PROTOCOL, TRUST, reviewer], "trust"


def ping(rng: random.Random) -> Request:
    return [PROTOCOL, PING], "pong"


CATEGORIES: dict[str, Callable[[random.Random], Request]] = {
    "wrong protocol": wrong_protocol,
    "truncated": truncated,
    "unknown kind": unknown_kind,
    "too many frames": too_many_frames,
    "garbage batch": garbage_batch,
    "bad events": bad_events,
    "deep nesting": deep_nesting,
    "wide batch": wide_batch,
    "oversized message": oversized,
    "weights request": weights_request,
    "trust request": trust_request,
    "ping": ping,
}
WEIGHTS = {"deep nesting": 0.3, "wide batch": 0.3, "oversized message": 0.3}
"""Fewer of the costly categories (each still tried several times at the default size)."""


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the learner), in MB."""
    total = 0.0
    pids = [pid, *children(pid)]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def dealer(port: int) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(f"tcp://127.0.0.1:{port}")
    return socket


def answer(socket: zmq.Socket, frames: list[bytes]) -> tuple[list[bytes], float]:
    """Send ``frames`` and wait for the answer; (reply, seconds)."""
    start = time.monotonic()
    socket.send_multipart(frames)
    assert socket.poll(int(DEADLINE_S * 1000)), f"no answer within {DEADLINE_S} s to {frames[:2]}"
    return socket.recv_multipart(), time.monotonic() - start


def outcome(reply: list[bytes]) -> str:
    """What a reply says: the error's reason, or the kind answered."""
    assert reply[0] == PROTOCOL, reply[:2]
    if reply[1] == ERROR:
        return reply[3].split(b":", 1)[0].decode()
    return reply[1].decode()


def ready(port: int, trainer: subprocess.Popen) -> None:
    probe = dealer(port)
    probe.send_multipart([PROTOCOL, PING])
    deadline = time.monotonic() + 180
    while not probe.poll(500):
        assert trainer.poll() is None, trainer.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the trainer did not start"
    probe.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hostile_requests_are_all_answered_counted_and_harmless(
    tmp_path: Path, free_port: Callable[[], int]
):
    rng = random.Random(SEED)
    port, pub = free_port(), free_port()
    trainer = start_trainer(tmp_path, port, pub, SETTINGS)
    tried: Counter[tuple[str, str]] = Counter()
    expected_rejects: Counter[str] = Counter()
    latencies: list[float] = []
    try:
        ready(port, trainer)
        rss_before = rss_mb(trainer.pid)
        socket = dealer(port)
        names = sorted(CATEGORIES)
        weights = [WEIGHTS.get(n, 1.0) for n in names]
        for i in range(REQUESTS):
            name = rng.choices(names, weights)[0]
            frames, expected = CATEGORIES[name](rng)
            reply, seconds = answer(socket, frames)
            latencies.append(seconds)
            got = outcome(reply)
            tried[name, got] += 1
            assert got == expected, (name, frames[:2], reply[:4])
            if reply[1] == ERROR:
                expected_rejects[got] += 1
                tag = frames[2][:64] if len(frames) > 2 else b""
                assert reply[2] == tag, "an error carries the id the request had"
            if reply[1] == ACK:
                report = msgspec.json.decode(reply[3])
                expected_rejects.update(report["rejected_by_reason"])
                assert len(report["rejected"]) <= 100 and len(reply[3]) < 64_000
            if i % 50 == 0:
                assert trainer.poll() is None, "the trainer exited"
        # a frame over ZeroMQ's hard limit: the connection is dropped, and counted
        for _ in range(2):
            big = dealer(port)
            big.send_multipart([PROTOCOL, BATCH, b"huge", b" " * (HARD_LIMIT + 1)])
            assert not big.poll(1000), "a frame over the hard limit gets no answer"
            big.close()
            tried["over the hard limit", "dropped"] += 1
        assert trainer.poll() is None, "the trainer exited"
        rss_after = rss_mb(trainer.pid)
        # valid work afterwards: stored exactly once, resent as duplicates
        events = event_stream(1000)
        for resend in (False, True):
            for start in range(0, len(events), 100):
                chunk = events[start : start + 100]
                reply, _ = answer(
                    socket,
                    [
                        PROTOCOL,
                        BATCH,
                        b"v%d" % start,
                        encode_batch([encode_event(e) for e in chunk]),
                    ],
                )
                report = msgspec.json.decode(reply[3])
                assert reply[1] == ACK and report["rejected_total"] == 0
                assert report["stored" if not resend else "duplicates"] == len(chunk)
        socket.close()
    finally:
        trainer.send_signal(signal.SIGTERM)
        code = trainer.wait(120)
    log = trainer.stderr.read().decode()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "internal" not in log, log[-3000:]
    store = TrainerStore(tmp_path / "store.sqlite")
    keys = store.keys()
    counted = status(store)
    store.close()
    rejects, disconnected = counted["rejects"], counted["disconnects"]
    assert keys[-1000:] == [event_key(e) for e in events] and len(set(keys)) == len(keys)
    assert disconnected >= 2, "each dropped connection is counted"
    assert rejects == dict(expected_rejects), "every reject counted under its reason"
    assert rss_after - rss_before < RSS_GROWTH_MB, (rss_before, rss_after)
    latencies.sort()
    report = [
        (
            f"{REQUESTS} hostile requests, seed {SEED}: every one answered, median "
            f"{latencies[len(latencies) // 2] * 1000:.0f} ms, slowest {latencies[-1]:.2f} s; "
            f"RSS {rss_before:.0f} -> {rss_after:.0f} MB; rejects counted {dict(rejects)}, "
            f"disconnected {disconnected}; 1,000 valid events stored once"
        )
    ]
    for (name, got), n in sorted(tried.items()):
        report.append(f"  {name:20s} -> {got:16s} {n}")
    print("\n".join(report))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_learner_ends_with_a_killed_trainer(tmp_path: Path, free_port: Callable[[], int]):
    port, pub = free_port(), free_port()
    trainer = start_trainer(tmp_path, port, pub, SETTINGS)
    try:
        ready(port, trainer)
        learners = children(trainer.pid)
        assert learners, "the learning process runs as a child"
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
    deadline = time.monotonic() + 3.0
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in learners):
        assert time.monotonic() < deadline, "a learner outlived its trainer by 3 s"
        time.sleep(0.05)


def _state(pid: int) -> str:
    """A process's state letter ('Z' zombie), '' when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""
