"""Distributed PPO update benchmark: one process against two DDP workers on the same samples.

``python -m trustfix.bench.bench_distributed [--samples 256] [--repeats 3]`` times, in one run,
one PPO update of the default ranker (CPU, one torch thread per process) on ``samples`` samples

1. in this process (:class:`~trustfix.trainer.ppo.PPOLearner`, the reference);
2. on two workers started by ``torch.distributed.run`` (gloo), each holding half of the same
   samples, the update under DDP (:class:`~trustfix.trainer.distributed.DistributedPPOLearner`);
   a barrier before and after each update, so the time is the slower worker's;

and prints the medians and their ratio.  Both processes of (2) share the machine's cores with
each other (and with anything else running).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from trustfix.bench.bench_stream import make_suggestion
from trustfix.trainer.config import DistributedConfig, PPOConfig, RankerConfig, TrustRegionConfig
from trustfix.trainer.events import candidate_text
from trustfix.trainer.policies import RankerPolicy
from trustfix.trainer.ppo import PPOLearner, RolloutBuffer


def buffer_of(learner: PPOLearner, indices: range) -> RolloutBuffer:
    """The samples ``indices`` (the same ones in both set-ups; as bench_stream's PPO figure)."""
    suggestions = [make_suggestion(i) for i in indices]
    return learner.transitions_from(
        [s.state or "" for s in suggestions],
        [[candidate_text(c.title, c.diff) for c in s.candidates] for s in suggestions],
        [s.chosen for s in suggestions],
        [-1.1] * len(indices),
        [0.0] * len(indices),
        [float(i % 2) for i in indices],
        [True] * len(indices),
        [0.5 + 0.5 * (i % 2) for i in indices],
    )


def single(samples: int, repeats: int) -> list[float]:
    """Seconds of each update in this process."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    learner = PPOLearner(RankerPolicy(RankerConfig()), PPOConfig(device="cpu"))
    times = []
    for _ in range(repeats):
        buffer = buffer_of(learner, range(samples))
        started = time.perf_counter()
        learner.update(buffer)
        times.append(time.perf_counter() - started)
    return times


def worker(samples: int, repeats: int, out: Path) -> None:
    """One of the torchrun workers: its half of the samples, DDP update, timed between barriers."""
    import torch.distributed as dist
    from trustfix.trainer.distributed import Collectives, DistributedPPOLearner

    torch.set_num_threads(1)
    ppo = PPOConfig(device="cpu")
    group = Collectives(DistributedConfig(backend="gloo"), ppo)
    torch.manual_seed(0)
    learner = DistributedPPOLearner(RankerPolicy(RankerConfig()), ppo, TrustRegionConfig(), group)
    shards = [range(r, samples, group.world) for r in range(group.world)]
    times = []
    for _ in range(repeats):
        buffer = buffer_of(learner, shards[group.rank])
        dist.barrier()
        started = time.perf_counter()
        learner.update_shards(buffer, [len(s) for s in shards])
        dist.barrier()
        times.append(time.perf_counter() - started)
    if group.rank == 0:
        out.write_text(json.dumps(times))
    dist.destroy_process_group()


def distributed(samples: int, repeats: int, workers: int) -> list[float]:
    """Seconds of each update on ``workers`` torchrun workers (worker 0's clock)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                str(workers),
                "--master-port",
                str(port),
                "-m",
                "trustfix.bench.bench_distributed",
                "--worker",
                "--samples",
                str(samples),
                "--repeats",
                str(repeats),
                "--out",
                str(out),
            ],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.samples, args.repeats, args.out)
        return
    one = single(args.samples, args.repeats)
    many = distributed(args.samples, args.repeats, args.workers)
    m1, mn = statistics.median(one), statistics.median(many)
    print(
        f"one PPO update, ranker, {args.samples} samples, CPU, 1 thread per process "
        f"(median of {args.repeats}):"
    )
    print(f"  1 process:            {m1:.2f} s  (runs {', '.join(f'{t:.2f}' for t in one)})")
    print(
        f"  {args.workers} DDP workers (gloo): {mn:.2f} s  (runs {', '.join(f'{t:.2f}' for t in many)})"
    )
    print(f"  speed-up: {m1 / mn:.2f}x  (cores here: {len(os.sched_getaffinity(0))})")


if __name__ == "__main__":
    main()
