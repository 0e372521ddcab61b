"""Feedback-stream benchmark: outbox -> DEALER -> trainer ROUTER -> store, acked and committed.

``python -m trustfix.bench.bench_stream [--events N] [--runs R]`` measures, on loopback,

1. end to end, R times: events/s from a filled outbox until every event is acked, committed in
   the trainer's store (a ``python -m trustfix.trainer`` process) and deleted from the outbox;
2. raw pyzmq PUSH/PULL of the same number of messages of the same size, R times, interleaved
   with the runs above, and the ratio of the medians;
3. one PPO update of the ranker on 256 samples on the CPU (one torch thread).

The event generators below are shared by the stream tests.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from trustfix.trainer.events import candidate_text
from trustfix.trainer.sample_events import event_stream, make_suggestion
from trustfix.trainer.wire import PING, PROTOCOL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_end_to_end(n: int, workdir: Path, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Events/s from a filled outbox to acked-and-committed (trainer in its own process, as
    deployed; its learning thread follows the events meanwhile), and the mean message size."""
    from trustfix.server.outbox import Outbox
    from trustfix.server.stream import OutboxSender
    from trustfix.trainer.config import StreamConfig
    from trustfix.trainer.events import encode_event
    from trustfix.trainer.store import TrainerStore

    events = event_stream(n)
    outbox = Outbox(
        workdir / "outbox.sqlite",
        max_rows=n + 1,
        warn_rows=n + 1,  # as `serve` opens it
        checkpoint_every_s=StreamConfig().wal_checkpoint_s,
    )
    for event in events:
        outbox.add(event)
    size = statistics.mean(len(encode_event(e)) for e in events)
    del events
    gc.collect()
    port = _free_port()
    trainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trustfix.trainer",
            "--store",
            str(workdir / "store.sqlite"),
            "--checkpoints",
            str(workdir / "ckpt"),
            "--endpoint",
            f"tcp://127.0.0.1:{port}",
            "--pub",
            f"tcp://127.0.0.1:{_free_port()}",
            "--config",
            str(workdir / "none.toml"),
            "--set",
            "encoders.text_encoder=hashing",
            "--set",
            "encoders.code_encoder=hashing",
            "--log-level",
            "WARNING",
            *extra,
        ]
    )
    try:
        probe = zmq.Context.instance().socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(f"tcp://127.0.0.1:{port}")
        probe.send_multipart([PROTOCOL, PING])
        if not probe.poll(120_000):  # answered once the trainer serves
            raise RuntimeError("the trainer did not start")
        probe.close(0)
        started = time.perf_counter()
        sender = OutboxSender(outbox, f"tcp://127.0.0.1:{port}").start()
        while sender.acked < n:  # counted by the sender: no COUNT(*) scans in the measured loop
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        sender.stop()
    finally:
        trainer.terminate()
        trainer.wait(30)
    stored = TrainerStore(workdir / "store.sqlite").count()
    outbox.close()
    return {
        "events": n,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "stored": stored,
        "message_bytes": size,
    }


def bench_push_pull(n: int, size: int) -> float:
    """Messages/s of raw pyzmq PUSH -> PULL on loopback TCP with ``size``-byte messages."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = context.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    payload = b"x" * size
    done = threading.Event()

    def receive() -> None:
        for _ in range(n):
            pull.recv()
        done.set()

    receiver = threading.Thread(target=receive)
    receiver.start()
    started = time.perf_counter()
    for _ in range(n):
        push.send(payload)
    done.wait()
    elapsed = time.perf_counter() - started
    receiver.join()
    push.close(0)
    pull.close(0)
    context.term()
    return n / elapsed


def bench_ppo_update(samples: int = 256, repeats: int = 3) -> float:
    """Median seconds of one PPO update of the default ranker on ``samples`` samples (CPU)."""
    import torch
    from trustfix.trainer.config import PPOConfig, RankerConfig
    from trustfix.trainer.policies import RankerPolicy
    from trustfix.trainer.ppo import PPOLearner

    torch.set_num_threads(1)
    torch.manual_seed(0)
    learner = PPOLearner(RankerPolicy(RankerConfig()), PPOConfig(device="cpu"))
    suggestions = [make_suggestion(i) for i in range(samples)]
    states = [s.state or "" for s in suggestions]
    candidates = [[candidate_text(c.title, c.diff) for c in s.candidates] for s in suggestions]
    times = []
    for _ in range(repeats):
        buffer = learner.transitions_from(
            states,
            candidates,
            [s.chosen for s in suggestions],
            [-1.1] * samples,
            [0.0] * samples,
            [float(i % 2) for i in range(samples)],
            [True] * samples,
            [0.5 + 0.5 * (i % 2) for i in range(samples)],
        )
        started = time.perf_counter()
        learner.update(buffer)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3, help="Runs of each stream measure.")
    parser.add_argument("--ppo-samples", type=int, default=256)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs, raws = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(bench_end_to_end(args.events, Path(tmp)))
        raws.append(bench_push_pull(args.events, round(runs[-1]["message_bytes"])))
    e2e = statistics.median(r["events_per_s"] for r in runs)
    raw = statistics.median(raws)
    ppo = bench_ppo_update(args.ppo_samples)
    figures = {
        "events": args.events,
        "message_bytes": runs[0]["message_bytes"],
        "events_per_s": e2e,
        "runs_events_per_s": [r["events_per_s"] for r in runs],
        "stored": [r["stored"] for r in runs],
        "push_pull_per_s": raw,
        "runs_push_pull_per_s": raws,
        "ratio": e2e / raw,
        "ppo_update_s": ppo,
        "ppo_samples": args.ppo_samples,
    }
    each = ", ".join(f"{r['events_per_s']:,.0f}" for r in runs)
    print(
        f"end to end (outbox -> acked and committed): {e2e:,.0f} events/s median of "
        f"{args.runs} ({each}; {args.events} events of {runs[0]['message_bytes']:.0f} B, "
        f"{min(figures['stored'])} stored)"
    )
    print(
        f"raw pyzmq PUSH/PULL, same size:             {raw:,.0f} messages/s median "
        f"({', '.join(f'{r:,.0f}' for r in raws)}); end to end = {figures['ratio']:.3f} x raw"
    )
    print(f"one PPO update, ranker, {args.ppo_samples} samples, CPU, 1 thread: {ppo:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
