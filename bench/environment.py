"""The refinement environment: candidates, test runs, style counts and policy states of the
tasks, each cached by source, and what a simulated reviewer sees of a step."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import random

from trustfix.bench.metrics import environment_reward
from trustfix.bench.reviewers import Edit, Step, TeamPreference, style_kind, unified_diff
from trustfix.bench.settings import PROPOSERS
from trustfix.bench.tasks import Task, style_counts
from trustfix.server.findings import LRUCache, ruff_findings
from trustfix.server.proposers import Candidate, propose
from trustfix.server.sandbox import RunResult, Sandbox
from trustfix.server.state import TestTrace, state_text
from trustfix.server.units import Unit, units
from trustfix.trainer.events import candidate_text as policy_candidate_text

KEEP_TITLE = "keep the code as it is"
"""Title of the "true fix" at a passing state where the team wants none of the refinements."""


def digest(text: str) -> str:
    """Short content hash of ``text`` (12 hex digits), for ids."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def changed_lines(a: str, b: str) -> int:
    """Lines removed plus lines added turning ``a`` into ``b`` (the ``-``/``+`` lines of their diff)."""
    opcodes = difflib.SequenceMatcher(None, a.splitlines(), b.splitlines()).get_opcodes()
    return sum((i2 - i1) + (j2 - j1) for tag, i1, i2, j1, j2 in opcodes if tag != "equal")


def candidate_text(candidate: Candidate) -> str:
    """What the policy reads of one candidate (the trainer's form: title and changed lines; the
    ranker keeps the first ``candidate_tokens`` tokens of it)."""
    return policy_candidate_text(candidate.title, candidate.diff)


class Environment:
    """Candidates, test runs, style counts and states of the refinement tasks, cached by source
    (candidates and states in LRU caches of ``cache_entries``; style counts are small ints)."""

    def __init__(
        self,
        sandbox: Sandbox,
        max_candidates: int,
        style_weight: float,
        cache_entries: int = 4096,
        trace_failures: int = 5,
    ) -> None:
        """``trace_failures``: failed tests the state lists (the rest are only counted)."""
        self.trace_failures = trace_failures
        self.sandbox = sandbox
        self.max_candidates = max_candidates
        self.style_weight = style_weight
        self._candidates = LRUCache(cache_entries)
        self._style: dict[str, int] = {}
        self._states = LRUCache(cache_entries)

    def unit(self, task: Task, source: str) -> Unit:
        """The task's function in ``source``."""
        for unit in units(source):
            if unit.qualname == task.entry_point:
                return unit
        raise ValueError(f"{task.id}: no function {task.entry_point} in the program")

    def candidates(self, task: Task, source: str) -> list[Candidate]:
        """The capped candidates of ``source`` (their style counts computed in one ruff call)."""
        key = (task.id, source)
        found = self._candidates.get(key)
        if found is None:
            found = propose(
                source, self.unit(task, source), proposers=PROPOSERS, cap=self.max_candidates
            )
            self._candidates.put(key, found)
            todo = [c.source for c in found if c.source not in self._style]
            self._style.update(zip(todo, style_counts(todo)))
        return found

    def style(self, source: str) -> int:
        """ruff E/W violations of ``source``."""
        if source not in self._style:
            self._style[source] = style_counts([source])[0]
        return self._style[source]

    def run(self, task: Task, source: str) -> RunResult:
        """The task's tests on ``source`` (the sandbox caches by content)."""
        return self.sandbox.run(source, task.tests, task.entry_point)

    def state(self, task: Task, source: str) -> str:
        """The policy's view: numbered unit, nodes, findings, and the last test run's trace."""
        key = (task.id, source)
        state = self._states.get(key)
        if state is None:
            trace = TestTrace.from_run(self.run(task, source))
            trace = dataclasses.replace(trace, failures=trace.failures[: self.trace_failures])
            state = state_text(self.unit(task, source), ruff_findings(source), trace)
            self._states.put(key, state)
        return state

    def reward(self, task: Task, before: str, after: str) -> float:
        """r_env of the step ``before`` -> ``after`` (see :func:`environment_reward`)."""
        rb, ra = self.run(task, before), self.run(task, after)
        return environment_reward(
            rb.share_passed,
            ra.share_passed,
            self.style(before),
            self.style(after),
            task.violations,
            rb.all_passed,
            ra.all_passed,
            self.style_weight,
        )

    def test_verdict(self, task: Task, before: str, after: str) -> bool | None:
        """What running the tests says of the step ``before`` -> ``after``: True when more tests
        pass, False when fewer, None when the same share passes (the tests cannot judge it)."""
        rb, ra = self.run(task, before), self.run(task, after)
        if ra.share_passed == rb.share_passed:
            return None
        return ra.share_passed > rb.share_passed

    def is_good(self, task: Task, before: str, chosen: Candidate, team: TeamPreference) -> bool:
        """Ground truth of a step: no test lost, and for a style refinement the team wants its
        kind, for any other edit r_env > 0."""
        if self.test_verdict(task, before, chosen.source) is False:
            return False
        kind = style_kind(chosen.proposer, chosen.title)
        if kind is not None:
            return team.wants(kind)
        return self.reward(task, before, chosen.source) > 0

    def true_fix(self, task: Task, source: str, team: TeamPreference) -> Candidate | None:
        """While a test fails: the candidate closest (changed lines) to the bug-free program.
        Once all pass: of the style refinements the team wants, the one closest to the canonical
        program; None when the team wants none of those offered (the code should stay)."""
        cands = self.candidates(task, source)
        if self.run(task, source).all_passed:
            ideal = task.original
            cands = [c for c in cands if (k := style_kind(c.proposer, c.title)) and team.wants(k)]
        else:
            ideal = task.fixed
        return min(cands, key=lambda c: changed_lines(c.source, ideal)) if cands else None

    def review_step(
        self, task: Task, source: str, chosen: Candidate, rng: random.Random, team: TeamPreference
    ) -> Step:
        """What a reviewer sees: the chosen edit, its truth, the true fix (or "keep the code")
        and up to 3 decoys."""
        cands = self.candidates(task, source)
        fix = self.true_fix(task, source, team)
        fix_edit = (
            Edit.between(source, fix.source, fix.title, fix.line)
            if fix is not None
            else Edit.between(source, source, KEEP_TITLE, chosen.line)
        )
        others = [c for c in cands if c.source not in (fix_edit.source, chosen.source)]
        decoys = rng.sample(others, min(3, len(others)))

        def edit(c: Candidate) -> Edit:
            return Edit.between(source, c.source, c.title, c.line)

        return Step(
            task.id,
            source,
            edit(chosen),
            self.is_good(task, source, chosen, team),
            fix_edit,
            tuple(edit(d) for d in decoys),
        )

    def edit_target(self, step: Step, diff: str | None) -> Edit | None:
        """The edit a correction diff proposes, when it is one of the step's edits (an empty
        diff, "keep the code", proposes none)."""
        for e in (step.fix, step.candidate, *step.decoys):
            if diff and unified_diff(step.source, e.source) == diff:
                return e
        return None
