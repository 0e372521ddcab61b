"""The oracle and coverage of bench tasks: how far running the tests over the repair edits'
candidates gets, and whether a task's true fix is among the first step's candidates, per bug
family."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustfix.server.repairs import repair_edits
from trustfix.server.sandbox import RunResult, Sandbox, SandboxConfig
from trustfix.server.units import units

if TYPE_CHECKING:
    from .tasks import Task

BUILD_SANDBOX = SandboxConfig(cpu_seconds=1, wall_timeout=3.0)
"""Limits used while building and checking tasks: a program that loops forever is stopped after
one CPU second."""

ProposeFn = Callable[[str], list[str]]
"""A proposer for the bench: a program's source -> candidate sources."""


def entry_range(source: str, entry_point: str) -> tuple[int, int]:
    """Byte range of the top-level function ``entry_point`` (the whole source if absent)."""
    for unit in units(source):
        if unit.qualname == entry_point:
            return unit.start_byte, unit.end_byte
    return 0, len(source.encode())


def operator_proposer(entry_point: str, cap: int | None = None) -> ProposeFn:
    """Proposer of every repair edit over the whole ``entry_point`` function (at most ``cap``,
    in source order; default all)."""

    def propose(source: str) -> list[str]:
        lo, hi = entry_range(source, entry_point)
        limit = 1_000_000 if cap is None else cap
        return [e.source for e in repair_edits(source, lo, hi, cap=limit)]

    return propose


@dataclass(frozen=True)
class OracleResult:
    """Best state reachable within the horizon."""

    source: str
    result: RunResult
    depth: int
    """Steps from the task's start to ``source`` (0: stopping at once is best)."""
    evaluated: int
    """Programs run by the search."""

    @property
    def solved(self) -> bool:
        """The best state passes every test."""
        return self.result.all_passed


def _rank(result: RunResult) -> tuple[bool, float]:
    return result.all_passed, result.share_passed


def oracle(
    task: Task,
    propose_fn: ProposeFn | None = None,
    sandbox: Sandbox | None = None,
    horizon: int = 3,
    beam: int = 4,
) -> OracleResult:
    """Best state within ``horizon`` steps over ``propose_fn``'s candidates, by running the tests.

    Breadth-first with pruning: depth d expands the ``beam`` best states of depth d-1 (ranked by
    all tests passing, then the share of tests passing; ties keep proposal order); states seen
    before are not run again; the search stops as soon as a state passes every test.
    """
    propose = propose_fn or operator_proposer(task.entry_point)
    own = sandbox is None
    sb = sandbox or Sandbox(BUILD_SANDBOX)
    try:
        start = sb.run(task.buggy, task.tests, task.entry_point)
        best = OracleResult(task.buggy, start, 0, 1)
        frontier, seen, evaluated = [task.buggy], {task.buggy}, 1
        for depth in range(1, horizon + 1):
            if best.solved or not frontier:
                break
            candidates = list(
                dict.fromkeys(c for s in frontier for c in propose(s) if c not in seen)
            )
            seen.update(candidates)
            results = sb.run_many([(c, task.tests, task.entry_point) for c in candidates])
            evaluated += len(candidates)
            ranked = sorted(zip(results, candidates), key=lambda rc: _rank(rc[0]), reverse=True)
            if ranked and _rank(ranked[0][0]) > _rank(best.result):
                best = OracleResult(ranked[0][1], ranked[0][0], depth, evaluated)
            frontier = [c for _, c in ranked[:beam]]
        return dataclasses.replace(best, evaluated=evaluated)
    finally:
        if own:
            sb.close()


def fix_in_first_step(
    task: Task, propose_fn: ProposeFn | None = None, sandbox: Sandbox | None = None
) -> bool:
    """Whether the first step's candidates contain the true fix.

    Without a sandbox: the exact true fix (``task.fixed``).  With one: any candidate that passes
    every test (an equivalent repair counts).
    """
    candidates = (propose_fn or operator_proposer(task.entry_point))(task.buggy)
    if task.fixed in candidates:
        return True
    if sandbox is None:
        return False
    jobs = [(c, task.tests, task.entry_point) for c in candidates]
    return any(r.all_passed for r in sandbox.run_many(jobs))


def family_coverage(
    tasks: Sequence[Task],
    propose_for: Callable[[Task], ProposeFn] | None = None,
    sandbox: Sandbox | None = None,
) -> dict[str, tuple[int, int]]:
    """Per bug family (``task.bug.family``): (tasks whose true fix is among the first step's
    candidates, tasks), with ``propose_for(task)``'s proposer (default: every repair edit)."""
    out: dict[str, tuple[int, int]] = {}
    for task in tasks:
        propose = propose_for(task) if propose_for is not None else None
        found = fix_in_first_step(task, propose, sandbox)
        hits, total = out.get(task.bug.family, (0, 0))
        out[task.bug.family] = (hits + found, total + 1)
    return dict(sorted(out.items()))
