"""The experiment of DESIGN.md ("The experiment"): methods x reviewer conditions x seeds.

The parts: :mod:`~trustfix.bench.settings` (its size, methods, ablations),
:mod:`~trustfix.bench.environment` (tasks, candidates, test runs, states),
:mod:`~trustfix.bench.runner` (one run: training and held-out evaluation),
:mod:`~trustfix.bench.metrics` (r_env and the metrics), :mod:`~trustfix.bench.parallel` (the plan
and the process pool) and :mod:`~trustfix.bench.report` (the output files).  This module ties
them together for ``trustfix bench`` (:func:`run_bench`) and re-exports their public names.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trustfix.bench.environment import Environment, candidate_text, changed_lines
from trustfix.bench.metrics import ccs, environment_reward, follow_rates, reviewer_quality, sir
from trustfix.bench.parallel import experiment_plan, plan_steps, release_memory, run_experiment
from trustfix.bench.reviewers import CONDITIONS
from trustfix.bench.runner import Runner, RunOutcome
from trustfix.bench.settings import ABLATIONS, METHODS, BenchConfig, quick_config
from trustfix.bench.starting import POLICY_CHOICES
from trustfix.trainer.config import TrustfixConfig


def bench_config(
    condition: str = "all",
    methods: Sequence[str] = (),
    ablations: bool = False,
    quick: bool = False,
    **changes: Any,
) -> BenchConfig:
    """The experiment's size from the command line's choices; ``changes`` are BenchConfig fields
    (None values are left at their defaults).  Raises ValueError on an unknown method or condition."""
    if changes.get("policy") not in (None, *POLICY_CHOICES):
        raise ValueError(
            f"unknown starting policy {changes['policy']!r}; expected {POLICY_CHOICES}"
        )
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; expected {list(METHODS)}")
    if condition != "all" and condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {[*CONDITIONS, 'all']}")
    cfg = BenchConfig(
        conditions=CONDITIONS if condition == "all" else (condition,), ablations=ablations
    )
    if quick:
        cfg = quick_config(cfg)
    chosen = {k: v for k, v in changes.items() if v is not None}
    if methods:
        chosen["methods"] = tuple(methods)
    return dataclasses.replace(cfg, **chosen)


def run_bench(
    bench_cfg: BenchConfig,
    cfg: TrustfixConfig,
    out: Path,
    command: str,
    workers: int | None = None,
    on_step: Callable[[], None] | None = None,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every run of the plan (``workers`` processes; default: the usable CPUs) and write the
    outputs into ``out``; return the results.json content."""
    from trustfix.bench.report import write_outputs

    workers = workers if workers is not None else len(os.sched_getaffinity(0))
    started = time.perf_counter()
    make_runner = functools.partial(
        Runner, bench_cfg, cfg.ppo, cfg.trust_region, cfg.confidence, cfg.ranker
    )
    outcome = run_experiment(bench_cfg, make_runner, workers, on_step, on_run)
    wall = time.perf_counter() - started
    settings = {
        k: dataclasses.asdict(getattr(cfg, k))
        for k in ("ppo", "trust_region", "confidence", "ranker")
    }
    return write_outputs(
        out,
        bench_cfg,
        outcome["runs"],
        outcome["bounds"],
        wall,
        {**settings, "workers": workers},
        command,
    )


__all__ = [
    "ABLATIONS",
    "METHODS",
    "BenchConfig",
    "Environment",
    "RunOutcome",
    "Runner",
    "bench_config",
    "candidate_text",
    "ccs",
    "changed_lines",
    "environment_reward",
    "experiment_plan",
    "follow_rates",
    "plan_steps",
    "quick_config",
    "release_memory",
    "reviewer_quality",
    "run_bench",
    "run_experiment",
    "sir",
]
