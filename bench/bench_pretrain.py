"""What the shipped pretrained ranker does before anyone reviews it.

Run: ``python -m trustfix.bench.bench_pretrain [--seeds 5] [--no-oracle] [--json FILE]``.  Prints

- held-out corpus examples: top-1 / top-5 accuracy against uniform choice (recorded in the
  checkpoint when it was trained; recomputed when the example cache is at hand);
- the held-out HumanEval tasks of ``trustfix bench`` (its environment: test trace in the state,
  its candidate cap), the policy alone, greedy, H = 3: CCS, and on the first step how often the
  true fix (the candidate giving the task's fixed program) is first and among the top 5; beside
  a random policy (uniform over STOP and the candidates), uniform choice over the operator
  candidates, the fresh (untrained) ranker and the oracle;
- ranking latency, 1 state x 48 candidates, one thread: median and p95 (as ``bench_ranker``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from trustfix.bench.bench_ranker import latency
from trustfix.bench.environment import candidate_text
from trustfix.bench.metrics import ccs
from trustfix.bench.runner import Runner
from trustfix.bench.settings import PROPOSERS, BenchConfig
from trustfix.bench.tasks import Task, make_tasks, oracle, split_tasks
from trustfix.server.findings import ruff_findings
from trustfix.server.proposers import Candidate, propose
from trustfix.server.state import state_text
from trustfix.server.units import units
from trustfix.trainer.policies import PRETRAINED, Policy, initial_policy, read_record
from trustfix.trainer.policies.base import STOP

Chooser = Callable[[str, list[Candidate], list[str]], int]
"""(state, candidates, their texts) -> action (0: STOP, i + 1: candidate i)."""


def heldout_tasks(task_seed: int = 0) -> list[Task]:
    """The benchmark's held-out tasks (42 with the default seed)."""
    return split_tasks(make_tasks(task_seed))[1]


def _unit(task: Task, source: str):
    return next(u for u in units(source) if u.qualname == task.entry_point)


def true_fix_rank(policy: Policy, state: str, texts: list[str], fix: int | None) -> int | None:
    """0-based rank of action ``fix`` in the policy's order over [STOP, candidates] (None when
    the true fix is not a candidate)."""
    if fix is None:
        return None
    with torch.inference_mode():
        log_probs = policy([state], [texts]).log_probs[0, : 1 + len(texts)]
    order = log_probs.argsort(descending=True).tolist()
    return order.index(fix)


def first_step_ranks(
    policy: Policy,
    tasks: Sequence[Task],
    with_trace: bool = True,
    runner: Runner | None = None,
    max_candidates: int = 32,
) -> list[int | None]:
    """Rank of the true fix on each task's first step: with the benchmark's states (test trace,
    through ``runner``), or as an editor without tests shows them (no trace, no sandbox)."""
    ranks = []
    for task in tasks:
        if with_trace and runner is not None:
            state = runner.env.state(task, task.buggy)
            cands = runner.env.candidates(task, task.buggy)
            texts = [candidate_text(c) for c in cands]
        else:
            unit = _unit(task, task.buggy)
            findings = ruff_findings(task.buggy)
            cands = propose(
                task.buggy, unit, findings=findings, proposers=PROPOSERS, cap=max_candidates
            )
            state = state_text(unit, findings)
            texts = [candidate_text(c) for c in cands]
        fix = next((i + 1 for i, c in enumerate(cands) if c.source == task.fixed), None)
        ranks.append(true_fix_rank(policy, state, texts, fix))
    return ranks


def policy_chooser(policy: Policy) -> Chooser:
    """Greedy choice of ``policy``."""

    def choose(state: str, cands: list[Candidate], texts: list[str]) -> int:
        with torch.inference_mode():
            return int(policy([state], [texts]).log_probs[0].argmax())

    return choose


def random_chooser(rng: random.Random, operators_only: bool = False) -> Chooser:
    """Uniform over STOP and the candidates, or over the operator candidates only (STOP when
    there are none)."""

    def choose(state: str, cands: list[Candidate], texts: list[str]) -> int:
        if not operators_only:
            return rng.randrange(len(cands) + 1)
        ops = [i + 1 for i, c in enumerate(cands) if c.proposer == "operator"]
        return rng.choice(ops) if ops else STOP

    return choose


def episode_ccs(runner: Runner, tasks: Sequence[Task], choose: Chooser) -> float:
    """CCS of one episode per task (H = the runner's horizon, no feedback)."""
    passed = []
    for task in tasks:
        source = task.buggy
        for _ in range(runner.cfg.horizon):
            state = runner.env.state(task, source)
            cands = runner.env.candidates(task, source)
            texts = [candidate_text(c) for c in cands]
            action = choose(state, cands, texts)
            if action == STOP:
                break
            source = cands[action - 1].source
        passed.append(runner.env.run(task, source).all_passed)
    return ccs(passed)


def rank_summary(ranks: Sequence[int | None]) -> dict[str, float]:
    """Share of tasks whose true fix is ranked first, in the top 3, in the top 5; and how many
    have it among the candidates at all."""
    n = max(1, len(ranks))
    return {
        "top1": sum(r is not None and r < 1 for r in ranks) / n,
        "top3": sum(r is not None and r < 3 for r in ranks) / n,
        "top5": sum(r is not None and r < 5 for r in ranks) / n,
        "fix_available": sum(r is not None for r in ranks) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the random baselines")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle (slow)")
    parser.add_argument("--tasks", type=int, default=0, help="held-out tasks used (0: all)")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = read_record(PRETRAINED)
    meta = record["metadata"]
    print(
        f"shipped checkpoint: sha256 {record['sha256'][:16]}, {record['size'] / 1e6:.1f} MB, "
        f"made by `{meta['command']}` in {meta['total_seconds'] / 60:.1f} min"
    )
    held = meta["heldout"]
    print(
        f"held-out corpus examples ({meta['examples']['heldout']}): top-1 {held['top1']:.3f} "
        f"(uniform {held['uniform_top1']:.3f}), top-5 {held['top5']:.3f} "
        f"(uniform {held['uniform_top5']:.3f})"
    )
    pretrained = initial_policy(start="pretrained")
    torch.manual_seed(0)
    fresh = initial_policy(start="fresh")
    runner = Runner(BenchConfig(test_tasks=args.tasks))
    figures: dict[str, object] = {"heldout_corpus": held}
    try:
        tasks = runner.test
        rows: dict[str, dict[str, float]] = {}
        for name, policy in (("pretrained", pretrained), ("fresh", fresh)):
            ranks = first_step_ranks(policy, tasks, runner=runner)
            rows[name] = {
                "ccs": episode_ccs(runner, tasks, policy_chooser(policy)),
                **rank_summary(ranks),
            }
        for name, ops in (("random", False), ("uniform operator", True)):
            runs = [
                episode_ccs(runner, tasks, random_chooser(random.Random(s), ops))
                for s in range(args.seeds)
            ]
            rows[name] = {"ccs": statistics.mean(runs)}
        if not args.no_oracle:

            def propose_fn(task: Task) -> Callable[[str], list[str]]:
                return lambda source: [c.source for c in runner.env.candidates(task, source)]

            best = [oracle(t, propose_fn(t), runner.sandbox, runner.cfg.horizon) for t in tasks]
            rows["oracle"] = {"ccs": ccs([o.solved for o in best])}
        print(
            f"\nheld-out HumanEval tasks: {len(tasks)}, greedy, H={runner.cfg.horizon}, "
            f"candidates capped at {runner.cfg.max_candidates}"
        )
        print("| policy | CCS % | true fix first | in top 3 | in top 5 |")
        print("|---|---|---|---|---|")
        for name, row in rows.items():
            tops = [f"{100 * row[k]:.1f} %" if k in row else "" for k in ("top1", "top3", "top5")]
            print(f"| {name} | {row['ccs']:.1f} | {' | '.join(tops)} |")
        print(
            f"(true fix among the candidates at all: {100 * rows['pretrained']['fix_available']:.1f} %)"
        )
        figures["humaneval"] = rows
    finally:
        runner.close()
    median, p95 = latency(pretrained, 48, args.latency_runs)
    print(
        f"\nranking latency, 1 state x 48 candidates, {torch.get_num_threads()} thread: "
        f"median {median:.1f} ms, p95 {p95:.1f} ms"
    )
    figures["latency_ms"] = {"median": median, "p95": p95}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
