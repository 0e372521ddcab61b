"""Forward latency of the default (shipped, pretrained) ranker policy on CPU.

Run: ``python -m trustfix.bench.bench_ranker [--threads N] [--runs 50]``.  Prints the median and
p95 milliseconds of one forward (inference mode) for 1 state x 48 candidates (what the editor
ranks) and the median for a batch of 32 states x 16 candidates: wall time, and the process's
CPU time (which a busy machine inflates less; with one thread it is what an idle core would
take).  States and candidates are realistic: the server's state of a function with its findings
and a failing-test trace, and candidates as the policy reads them (title and changed lines).
"""

from __future__ import annotations

import argparse
import difflib
import random
import statistics
import time

import torch
from trustfix.server.state import TestTrace, state_text
from trustfix.server.units import units
from trustfix.trainer.events import candidate_text
from trustfix.trainer.policies import Policy, initial_policy

FUNCTION = """def moving_average(values, window):
    if window <= 0:
        raise ValueError("window must be positive")
    total = 0
    out = []
    for i in range(len(values) + 1):
        total += values[i]
        if i >= window:
            total -= values[i - window]
        if i >= window - 1:
            out.append(total / window)
    return out
"""

SWAPS = [
    ("+ 1", ""),
    ("<=", "<"),
    (">=", ">"),
    ("-=", "+="),
    ("/ window", "// window"),
    ("total = 0", "total = 0.0"),
    ("i - window", "i - window + 1"),
    ("out", "result"),
]


def make_state(rng: random.Random) -> str:
    """The server's state of the function, with a failing-test trace, lightly varied."""
    unit = units(FUNCTION)[0]
    trace = TestTrace(
        rng.randrange(5), 2, (("test_basic", "IndexError", 7), ("test_window_one", "IndexError", 7))
    )
    return state_text(unit, [], trace)


def make_candidate(rng: random.Random) -> str:
    """One or two edits of the function as the policy reads them: a title, the changed lines."""
    edited = FUNCTION
    for old, new in rng.sample(SWAPS, rng.choice((1, 2))):
        edited = edited.replace(old, new, 1)
    diff = "".join(
        difflib.unified_diff(
            FUNCTION.splitlines(keepends=True), edited.splitlines(keepends=True), "a/m.py", "b/m.py"
        )
    )
    return candidate_text(f"repair operator {rng.randrange(100)}", diff)


def timings_ms(
    policy: Policy, states: list[str], cands: list[list[str]], runs: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU times of ``runs`` forwards, in milliseconds (after 3 warm-up passes)."""
    wall, cpu = [], []
    with torch.inference_mode():
        for i in range(runs + 3):
            start, start_cpu = time.perf_counter(), time.process_time()
            policy(states, cands)
            if i >= 3:
                wall.append(1e3 * (time.perf_counter() - start))
                cpu.append(1e3 * (time.process_time() - start_cpu))
    return wall, cpu


def median_ms(
    policy: Policy, states: list[str], cands: list[list[str]], runs: int
) -> tuple[float, float]:
    """Median wall and CPU time of one forward, in milliseconds."""
    wall, cpu = timings_ms(policy, states, cands, runs)
    return statistics.median(wall), statistics.median(cpu)


def latency(policy: Policy, n_candidates: int = 48, runs: int = 50) -> tuple[float, float]:
    """Median and p95 wall milliseconds of ranking 1 state x ``n_candidates``."""
    rng = random.Random(0)
    wall, _ = timings_ms(
        policy, [make_state(rng)], [[make_candidate(rng) for _ in range(n_candidates)]], runs
    )
    return statistics.median(wall), statistics.quantiles(wall, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(0)
    torch.manual_seed(0)
    policy = initial_policy().eval()
    state = make_state(rng)
    cands = [make_candidate(rng) for _ in range(48)]
    tokens = [len(policy.candidate_ids(c, len(policy.state_ids(state)))) for c in cands]
    print(
        f"threads={torch.get_num_threads()} state tokens={len(policy.state_ids(state))} "
        f"candidate tokens (median)={statistics.median(tokens)}"
    )
    wall, cpu = timings_ms(policy, [state], [cands], args.runs)
    print(
        f"1 state x 48 candidates: {statistics.median(wall):.2f} ms wall "
        f"(p95 {statistics.quantiles(wall, n=20)[-1]:.2f}), {statistics.median(cpu):.2f} ms cpu"
    )
    states = [make_state(rng) for _ in range(32)]
    batch = [[make_candidate(rng) for _ in range(16)] for _ in range(32)]
    wall, cpu = median_ms(policy, states, batch, args.runs)
    print(f"32 states x 16 candidates: {wall:.2f} ms wall, {cpu:.2f} ms cpu")


if __name__ == "__main__":
    main()
