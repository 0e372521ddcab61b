"""The feedback stream end to end over loopback ZeroMQ, with real SQLite files and processes:
outbox drained exactly once through kills of either side, training, a new version published,
fetched, verified and loaded by the server; the trainer's commands on the resulting store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import zmq
from conftest import start_trainer
from trustfix.server.outbox import Outbox
from trustfix.server.stream import OutboxSender, PolicyFetchError, PolicySubscriber, fetch_policy
from trustfix.trainer.config import EncoderConfig, StreamConfig, TrustfixConfig
from trustfix.trainer.daemon import TrainerDaemon
from trustfix.trainer.events import encode_batch, encode_event, event_key
from trustfix.trainer.sample_events import event_stream, make_feedback, make_suggestion
from trustfix.trainer.store import TrainerStore
from trustfix.trainer.wire import ACK, BATCH, PROTOCOL, TRUST

HASHING = TrustfixConfig(encoders=EncoderConfig(text_encoder="hashing", code_encoder="hashing"))
FAST = StreamConfig(
    update_every=10**9,
    min_samples=10**9,
    ack_timeout_s=0.3,
    backoff_max_s=1.0,
    idle_poll_s=0.05,
    batch_events=500,
)
N = 10_000


def filled_outbox(path: Path, events) -> Outbox:
    outbox = Outbox(path, max_rows=len(events) + 1, warn_rows=len(events) + 1)
    for event in events:
        outbox.add(event)
    return outbox


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_daemon(
    tmp_path: Path, stream: StreamConfig = FAST, endpoint: str = "tcp://127.0.0.1:0"
) -> tuple[TrainerDaemon, threading.Thread]:
    d = TrainerDaemon(
        tmp_path / "store.sqlite", tmp_path / "ckpt", endpoint, "tcp://127.0.0.1:0", HASHING, stream
    )
    thread = threading.Thread(target=d.serve_forever, daemon=True)
    thread.start()
    return d, thread


def drain_and_stop(
    outbox: Outbox,
    sender: OutboxSender,
    d: TrainerDaemon,
    thread: threading.Thread,
    timeout: float = 30,
) -> None:
    """Wait for the outbox to drain; then (also on a timeout) stop the sender and the daemon."""
    try:
        wait_for(lambda: outbox.count() == 0, timeout, "the outbox to drain")
    finally:
        sender.stop()
        d.stop()
        thread.join(60)


def assert_exactly_once(store_path: Path, events) -> None:
    store = TrainerStore(store_path)
    keys = store.keys()
    assert len(keys) == len(set(keys)) == len(events)
    assert set(keys) == {event_key(e) for e in events}
    store.close()


def test_outbox_drains_through_the_daemon(tmp_path: Path):
    events = event_stream(600)
    d, thread = start_daemon(tmp_path)
    outbox = filled_outbox(tmp_path / "outbox.sqlite", events)
    sender = OutboxSender(outbox, d.endpoint, FAST).start()
    wait_for(lambda: outbox.count() == 0, 60, "the outbox to drain")
    # events added later flow too, and a resent event is stored once
    outbox.add(make_feedback(99_999, "s1"))
    outbox.add(events[0])
    wait_for(lambda: outbox.count() == 0, 60, "the late events")
    sender.stop()
    d.stop()
    thread.join(60)
    assert_exactly_once(tmp_path / "store.sqlite", [*events, make_feedback(99_999, "s1")])
    assert sender.acked == 602  # the resent event is acked (as a duplicate) too


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_trainer_killed_mid_stream_loses_nothing(tmp_path: Path, free_port: Callable[[], int]):
    events = event_stream(N)
    outbox = filled_outbox(tmp_path / "outbox.sqlite", events)
    port, pub = free_port(), free_port()
    trainer = start_trainer(tmp_path, port, pub)
    sender = OutboxSender(outbox, f"tcp://127.0.0.1:{port}", FAST).start()
    try:
        wait_for(lambda: outbox.count() < N - 2000, 40, "the first batches")
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        left = outbox.count()
        assert 0 < left < N, "the kill must land mid-stream"
        time.sleep(0.5)
        assert outbox.count() == left, "nothing may be acked while the trainer is down"
        trainer = start_trainer(tmp_path, port, pub)
        wait_for(lambda: outbox.count() == 0, 60, "the outbox to drain after the restart")
    finally:
        sender.stop()
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(60) == 0, trainer.stderr.read().decode()[-2000:]
    assert_exactly_once(tmp_path / "store.sqlite", events)
    assert sender.resends >= 1


_SERVER = """
import sys, time
from pathlib import Path
from trustfix.server.outbox import Outbox
from trustfix.server.stream import OutboxSender
from trustfix.trainer.config import StreamConfig
outbox = Outbox(Path(sys.argv[1]), max_rows=10**6)
OutboxSender(outbox, sys.argv[2], StreamConfig(ack_timeout_s=0.3, batch_events=200)).start()
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_server_killed_mid_stream_loses_nothing(tmp_path: Path):
    events = event_stream(N)
    outbox = filled_outbox(tmp_path / "outbox.sqlite", events)
    d, thread = start_daemon(tmp_path)

    def server() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(tmp_path / "outbox.sqlite"), d.endpoint]
        )

    proc = server()
    try:
        wait_for(lambda: outbox.count() < N - 1000, 40, "the first batches")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert outbox.count() > 0, "the kill must land mid-stream"
        proc = server()
        wait_for(lambda: outbox.count() == 0, 60, "the outbox to drain after the restart")
    finally:
        proc.kill()
        proc.wait(10)
        d.stop()
        thread.join(60)
    assert_exactly_once(tmp_path / "store.sqlite", events)


def training_events(n: int):
    """Suggestions with two reviewers' feedback each; r-good agrees with the tests, r-bad not."""
    out = []
    for i in range(n):
        verdict = "supports" if i % 2 == 0 else "refutes"
        out.append(make_suggestion(i, "r-good"))
        out.append(make_feedback(2 * i, f"s{i}", "r-good", "accept" if i % 2 == 0 else "reject"))
        out.append(make_feedback(2 * i + 1, f"s{i}", "r-bad", "reject" if i % 2 == 0 else "accept"))
        out.append(make_suggestion(i, "r-good", revision=1, verdict=verdict))
    return out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_training_publishes_a_version_the_server_fetches_verifies_and_loads(tmp_path: Path):
    stream = StreamConfig(
        update_every=16,
        min_samples=4,
        max_samples=64,
        ack_timeout_s=0.5,
        update_min_interval_s=0.0,
        save_every_s=0.2,
        announce_every_s=0.3,
        chunk_bytes=64 * 1024,
    )
    d, thread = start_daemon(tmp_path, stream)
    installed: list = []
    sub = PolicySubscriber(
        d.pub_endpoint,
        d.endpoint,
        tmp_path / "server-ckpt",
        on_policy=lambda policy, info: installed.append(info),
    ).start()
    outbox = filled_outbox(tmp_path / "outbox.sqlite", training_events(12))
    sender = OutboxSender(outbox, d.endpoint, stream).start()
    try:
        wait_for(lambda: installed, 60, "a policy version to reach the server")
        info = installed[0]
        published = {v["version"]: v for v in d.store.versions()}
        assert published[info.version]["sha256"] == info.sha256
        assert sub.policy is not None and not sub.policy.training
        assert (tmp_path / "server-ckpt" / f"policy-v{info.version}.json").is_file()
        # the estimator learnt from execution evidence: the reviewer who agrees with tests wins
        wait_for(lambda: d.store.get_state("processed_seq", 0) >= 48, 60, "the estimator save")
        reviewers = {r["reviewer"]: r for r in d.store.load_estimator_rows()["reviewers"]}
        theta = {k: r["alpha"] / (r["alpha"] + r["beta"]) for k, r in reviewers.items()}
        assert theta["r-good"] > 0.7 and theta["r-bad"] < 0.3
        assert d.store.metrics()[0]["samples"] >= 4
        versions_before = len(d.store.versions())
        processed = d.store.get_state("processed_seq", 0)
    finally:
        sender.stop()
        sub.stop()
        d.stop()
        thread.join(30)
    # a restart resumes where it stopped: the position in the stream and the version numbers
    d2, thread2 = start_daemon(tmp_path, stream)
    outbox2 = filled_outbox(tmp_path / "outbox2.sqlite", training_events(20)[48:])
    sender2 = OutboxSender(outbox2, d2.endpoint, stream).start()
    try:
        assert d2.store.get_state("processed_seq", 0) >= processed
        wait_for(lambda: len(d2.store.versions()) > versions_before, 60, "the next version")
        assert d2.store.versions()[-1]["version"] == versions_before + 1
        rows = {r["reviewer"]: r for r in d2.store.load_estimator_rows()["reviewers"]}
        assert rows["r-good"]["count"] > reviewers["r-good"]["count"]
    finally:
        sender2.stop()
        d2.stop()
        thread2.join(30)


def test_tampered_or_unknown_versions_are_refused(tmp_path: Path):
    from trustfix.trainer.policies import RankerPolicy, save_checkpoint

    ckpt = tmp_path / "ckpt"
    info = save_checkpoint(RankerPolicy(), ckpt, 1)
    d, thread = start_daemon(tmp_path)
    fetch = zmq.Context.instance().socket(zmq.DEALER)
    fetch.setsockopt(zmq.LINGER, 0)
    fetch.connect(d.endpoint)
    try:
        good = {"version": 1, "sha256": info.sha256, "size": info.size}
        with pytest.raises(PolicyFetchError, match="announced sha256"):
            fetch_policy(fetch, {**good, "sha256": "0" * 64}, tmp_path / "server")
        with pytest.raises(PolicyFetchError, match="no policy version 9"):
            fetch_policy(fetch, {**good, "version": 9}, tmp_path / "server")
        assert not (tmp_path / "server" / "policy-v1.json").exists()
        meta = fetch_policy(fetch, good, tmp_path / "server")
        assert json.loads(meta.read_text())["sha256"] == info.sha256
        assert (
            tmp_path / "server" / "policy-v1.safetensors"
        ).read_bytes() == info.path.read_bytes()
    finally:
        fetch.close()
        d.stop()
        thread.join(60)


def test_commands_on_the_store(tmp_path: Path):
    from trustfix.cli import app
    from typer.testing import CliRunner

    stream = StreamConfig(update_every=10**9, min_samples=10**9, save_every_s=0.1)
    d, thread = start_daemon(tmp_path, stream)
    outbox = filled_outbox(tmp_path / "outbox.sqlite", training_events(6))
    sender = OutboxSender(outbox, d.endpoint, stream).start()
    wait_for(lambda: outbox.count() == 0, 60, "the outbox to drain")
    wait_for(lambda: d.store.get_state("processed_seq", 0) >= 24, 60, "the estimator save")
    sender.stop()
    d.stop()
    thread.join(60)
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store.sqlite")]
    out = runner.invoke(app, ["reviewers", "--json", *store])
    assert out.exit_code == 0, out.output
    rows = {r["reviewer"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"r-good", "r-bad"} and rows["r-good"]["items"] == 6
    assert rows["r-good"]["theta"] > rows["r-bad"]["theta"]

    out = runner.invoke(app, ["explain", "f1", *store])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["reviewer"] == "r-bad" and {"delta", "q", "prior", "updates"} <= set(report)
    assert any(u["source"] == "execution" and not u["consistent"] for u in report["updates"])
    assert runner.invoke(app, ["explain", "nope", *store]).exit_code != 0

    out = runner.invoke(app, ["export", "--reviewer", "r-bad", *store])
    assert out.exit_code == 0, out.output
    exported = json.loads(out.stdout)
    assert len(exported["events"]) == 6 and all(
        e["reviewer"] == "r-bad" for e in exported["events"]
    )
    assert exported["confidence"]["items"] == 6 and len(exported["items"]) == 6

    out = runner.invoke(app, ["forget", "--reviewer", "r-bad", *store])
    assert out.exit_code == 0, out.output
    s = TrainerStore(tmp_path / "store.sqlite")
    assert list(s.reviewer_events("r-bad")) == [] and s.count("feedback") == 6
    reviewers = {r["reviewer"] for r in s.load_estimator_rows()["reviewers"]}
    assert reviewers == {"r-good"}
    out = runner.invoke(
        app, ["status", "--json", *store, "--outbox", str(tmp_path / "outbox.sqlite")]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert (
        report["outbox"] == 0 and report["feedback"] == 6 and report["forget_requests_pending"] == 0
    )
    assert msgspec.json.decode(json.dumps(report["rejects"])) == {}


def test_forget_while_the_trainer_runs(tmp_path: Path):
    from trustfix.cli import app
    from typer.testing import CliRunner

    stream = StreamConfig(update_every=10**9, min_samples=10**9, save_every_s=0.1)
    d, thread = start_daemon(tmp_path, stream)
    try:
        outbox = filled_outbox(tmp_path / "outbox.sqlite", training_events(4))
        sender = OutboxSender(outbox, d.endpoint, stream).start()
        wait_for(lambda: d.store.get_state("processed_seq", 0) >= 16, 60, "the estimator save")
        sender.stop()
        out = CliRunner().invoke(
            app, ["forget", "--reviewer", "r-good", "--store", str(tmp_path / "store.sqlite")]
        )
        assert out.exit_code == 0 and "running trainer" in out.output, out.output
        wait_for(lambda: not d.store.pending_forgets(), 60, "the trainer to apply the request")
        rows = d.store.load_estimator_rows()
        assert {r["reviewer"] for r in rows["reviewers"]} == {"r-bad"}
        assert {r["reviewer"] for r in rows["items"]} == {"r-bad"}
        assert d.store.count("feedback") == 4 and not list(d.store.reviewer_events("r-good"))
    finally:
        d.stop()
        thread.join(60)


def test_outbox_grows_while_the_trainer_is_away_then_drains(
    tmp_path: Path, free_port: Callable[[], int]
):
    port = free_port()
    stream = StreamConfig(
        update_every=10**9,
        min_samples=10**9,
        ack_timeout_s=0.2,
        backoff_max_s=0.5,
        idle_poll_s=0.05,
    )
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sender = OutboxSender(outbox, f"tcp://127.0.0.1:{port}", stream).start()
    events = event_stream(1500)
    slowest = 0.0
    for event in events:  # what the language server does on each editor action
        started = time.perf_counter()
        outbox.add(event)
        slowest = max(slowest, time.perf_counter() - started)
    time.sleep(0.3)
    assert outbox.count() == len(events)
    assert slowest < 0.25, f"an outbox write took {slowest * 1000:.0f} ms"
    d, thread = start_daemon(tmp_path, stream, f"tcp://127.0.0.1:{port}")
    drain_and_stop(outbox, sender, d, thread)
    assert_exactly_once(tmp_path / "store.sqlite", events)


def test_batches_shrink_and_undeliverable_events_are_dropped(tmp_path: Path):
    import msgspec.structs

    stream = StreamConfig(
        update_every=10**9,
        min_samples=10**9,
        max_message_bytes=40_000,
        ack_timeout_s=0.5,
        batch_bytes=1_000_000,
    )
    d, thread = start_daemon(tmp_path, stream)
    huge = msgspec.structs.replace(make_suggestion(10_000), state="x" * 60_000)
    events = event_stream(120)
    outbox = filled_outbox(tmp_path / "outbox.sqlite", [*events[:60], huge, *events[60:]])
    # a damaged row (not JSON) would spoil every batch it is in: it is found and dropped
    outbox.db.execute(
        "INSERT INTO events (key, type, created, body) VALUES (?, ?, ?, ?)",
        ("damaged", "feedback", 0.0, b'{"type":"feedback",'),
    )
    outbox.db.conn.commit()
    sender = OutboxSender(outbox, d.endpoint, stream).start()
    drain_and_stop(outbox, sender, d, thread)
    assert sender.dropped == 2
    assert_exactly_once(tmp_path / "store.sqlite", events)


def test_trust_goes_back_only_over_the_connection_that_delivered_the_reviewer(tmp_path: Path):
    stream = StreamConfig(
        update_every=10**9,
        min_samples=10**9,
        save_every_s=0.1,
        trust_every_s=0.0,
        ack_timeout_s=0.5,
    )
    d, thread = start_daemon(tmp_path, stream)
    events = training_events(6)
    senders = [
        OutboxSender(
            filled_outbox(tmp_path / f"{who}.sqlite", [e for e in events if e.reviewer == who]),
            d.endpoint,
            stream,
            reviewer=who,
        ).start()
        for who in ("r-good", "r-bad")
    ]
    snoop = zmq.Context.instance().socket(zmq.DEALER)
    snoop.setsockopt(zmq.LINGER, 0)
    snoop.connect(d.endpoint)

    def ask(*frames: bytes) -> list[bytes]:
        snoop.send_multipart([PROTOCOL, *frames])
        assert snoop.poll(10_000), "the trainer did not answer"
        return snoop.recv_multipart()

    try:
        wait_for(
            lambda: d.store.get_state("processed_seq", 0) >= len(events), 60, "the estimator save"
        )
        for sender in senders:  # as a version announcement does
            sender.request_trust()
        wait_for(
            lambda: all(
                s.trust is not None and s.trust == d.store.reviewer_trust(s.reviewer)
                for s in senders
            ),
            20,
            "each server's own trust",
        )
        good, bad = (s.trust for s in senders)
        assert good["theta"] > 0.7 and bad["theta"] < 0.3 and good["count"] == bad["count"] == 6
        # a connection that delivered nothing, or only another reviewer's events, learns nothing:
        # the answer is the same null as for an id nobody has
        assert ask(TRUST, b"r-good") == [PROTOCOL, TRUST, b"r-good", b"null"]
        batch = encode_batch([encode_event(make_feedback(500, "s0", "r-snoop", "reject"))])
        assert ask(BATCH, b"snoop", batch)[1] == ACK
        wait_for(lambda: d.store.reviewer_trust("r-snoop") is not None, 60, "the snoop's estimate")
        for other in (b"r-good", b"r-bad", b"r-nobody"):
            assert ask(TRUST, other) == [PROTOCOL, TRUST, other, b"null"]
        own = msgspec.json.decode(ask(TRUST, b"r-snoop")[3])
        assert own == d.store.reviewer_trust("r-snoop") and own["count"] == 1
    finally:
        snoop.close()
        for sender in senders:
            sender.stop()
        d.stop()
        thread.join(60)


def test_stream_settings_come_from_the_environment_and_flags(tmp_path: Path):
    from trustfix.cli import app
    from trustfix.trainer.config import load_config
    from trustfix.trainer.events import decode_batch
    from typer.testing import CliRunner

    env = {"TRUSTFIX_STREAM__BATCH_EVENTS": "7"}
    cfg = load_config(pyproject=tmp_path / "none.toml", env=env)
    assert cfg.stream.batch_events == 7
    # a server built from it sends batches of 7 events
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    outbox = filled_outbox(tmp_path / "outbox.sqlite", event_stream(20))
    sender = OutboxSender(outbox, f"tcp://127.0.0.1:{port}", cfg.stream).start()
    try:
        assert router.poll(10_000), "no batch came"
        _, protocol, kind, _, payload = router.recv_multipart()
        assert (protocol, kind) == (PROTOCOL, BATCH)
        good, rejected = decode_batch(payload)
        assert len(good) == 7 and not rejected
    finally:
        sender.stop()
        router.close()
    runner = CliRunner()
    config = ["config", "--config", str(tmp_path / "none.toml")]
    out = runner.invoke(app, config, env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["stream"]["batch_events"] == 7
    out = runner.invoke(app, [*config, "--set", "stream.window=5"], env=env)
    stream = json.loads(out.stdout)["stream"]
    assert (stream["batch_events"], stream["window"]) == (7, 5)
    assert runner.invoke(app, [*config, "--set", "stream.nope=1"]).exit_code != 0
