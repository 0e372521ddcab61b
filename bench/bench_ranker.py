"""Forward latency of the default ranker policy on CPU.

Run: ``python -m trustfix.bench.bench_ranker [--threads N] [--runs 50]``.  Prints the median
milliseconds of one forward (inference mode) for 1 state x 64 candidates and for a batch of
32 states x 16 candidates: wall time, and the process's CPU time (which a busy machine inflates
less; with one thread it is what an idle core would take).  States and candidates are realistic: a function with its findings
and a failing-test trace, and unified diffs with a title.
"""

from __future__ import annotations

import argparse
import difflib
import random
import statistics
import time

import torch
from trustfix.trainer.config import RankerConfig
from trustfix.trainer.policies.ranker import RankerPolicy

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

FINDINGS = """line 6: IndexError in test_moving_average_basic
line 6: B007 loop control variable not used as expected
tests failed: test_moving_average_basic test_moving_average_window_one
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
    """A function, its findings and a test trace, lightly varied."""
    return f"# unit {rng.randrange(1000)}\n{FUNCTION}\n{FINDINGS}"


def make_candidate(rng: random.Random) -> str:
    """A unified diff of one or two edits to the function, plus a title."""
    edited = FUNCTION
    for old, new in rng.sample(SWAPS, rng.choice((1, 2))):
        edited = edited.replace(old, new, 1)
    diff = difflib.unified_diff(
        FUNCTION.splitlines(keepends=True), edited.splitlines(keepends=True), "a/m.py", "b/m.py"
    )
    return f"repair operator {rng.randrange(100)}\n" + "".join(diff)


def median_ms(
    policy: RankerPolicy, states: list[str], cands: list[list[str]], runs: int
) -> tuple[float, float]:
    """Median wall and CPU time of one forward, in milliseconds (after 3 warm-up passes)."""
    wall, cpu = [], []
    with torch.inference_mode():
        for i in range(runs + 3):
            start, start_cpu = time.perf_counter(), time.process_time()
            policy(states, cands)
            if i >= 3:
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(0)
    torch.manual_seed(0)
    policy = RankerPolicy(RankerConfig()).eval()
    state = make_state(rng)
    cands = [make_candidate(rng) for _ in range(64)]
    tokens = [len(policy.candidate_ids(c, len(policy.state_ids(state)))) for c in cands]
    print(
        f"threads={torch.get_num_threads()} state tokens={len(policy.state_ids(state))} "
        f"candidate tokens (median)={statistics.median(tokens)}"
    )
    wall, cpu = median_ms(policy, [state], [cands], args.runs)
    print(f"1 state x 64 candidates: {wall:.2f} ms wall, {cpu:.2f} ms cpu")
    states = [make_state(rng) for _ in range(32)]
    batch = [[make_candidate(rng) for _ in range(16)] for _ in range(32)]
    wall, cpu = median_ms(policy, states, batch, args.runs)
    print(f"32 states x 16 candidates: {wall:.2f} ms wall, {cpu:.2f} ms cpu")


if __name__ == "__main__":
    main()
