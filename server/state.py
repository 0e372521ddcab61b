"""The text the policy sees for one unit, every section within a token budget: a header, the
numbered source (whole, or for a long unit the lines around the cursor and the failing lines),
the syntax-node sequence, the findings per line, and the last test run's trace.

Tokens are counted as the ranker splits them (:mod:`trustfix.trainer.tokens`), so a state made
within ``StateConfig.total_tokens`` reaches the ranker whole."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby

from trustfix.trainer.tokens import count_tokens, cut_tokens

from .findings import Finding, findings_by_line
from .sandbox import RunResult
from .units import Unit, node_sequence


@dataclass(frozen=True)
class TestTrace:
    """The outcome of the last test run of the file a unit belongs to.

    ``failures`` holds one ``(test name, exception type, line)`` per failed test: the exception's
    class name (``AssertionError``, ``TimeoutError``...) and the 1-based line of the file where it
    was raised, or None when unknown.
    """

    __test__ = False  # not a pytest test class

    passed: int
    failed: int
    failures: tuple[tuple[str, str, int | None], ...] = field(default_factory=tuple)

    @classmethod
    def from_run(cls, result: RunResult) -> TestTrace:
        """The trace of a sandbox run; a run-level error (timeout, memory...) is one failure."""
        failures = tuple(
            (t.name, t.exception or "AssertionError", t.line) for t in result.tests if not t.passed
        )
        if result.error and not failures:
            failures = (("run", result.error, None),)
        return cls(result.passed, max(result.failed, len(failures)), failures)


@dataclass(frozen=True)
class StateConfig:
    """Token budgets of the state's sections (tokens as the ranker splits them)."""

    total_tokens: int = 256
    """Whole state; the ranker's ``state_tokens`` (the source gets what the others leave)."""
    trace_tokens: int = 40
    """The last test run's summary and failures, at most."""
    findings_tokens: int = 48
    """Findings on the unit's lines, at most (first lines first)."""
    nodes_tokens: int = 16
    """The compact syntax-node sequence, at most (its start)."""
    context_lines: int = 2
    """Lines kept on each side of the cursor and of each failing line before any other line of a
    long unit."""


DEFAULT_STATE = StateConfig()


def compact_nodes(types: Iterable[str]) -> str:
    """Node types joined by spaces, runs of one type written ``type*n``."""
    parts = []
    for kind, run in groupby(types):
        count = sum(1 for _ in run)
        parts.append(kind if count == 1 else f"{kind}*{count}")
    return " ".join(parts)


def numbered_lines(unit: Unit) -> list[str]:
    """The unit's lines prefixed by their 1-based line numbers in the file."""
    lines = unit.source.splitlines()
    width = len(str(unit.start_line + len(lines)))
    return [f"{unit.start_line + i:>{width}}| {text}" for i, text in enumerate(lines)]


def numbered_source(unit: Unit) -> str:
    """The unit's lines prefixed by their 1-based line numbers in the file."""
    return "\n".join(numbered_lines(unit))


def line_priority(n_lines: int, focus: Iterable[int], context: int) -> list[int]:
    """Order in which a long unit's lines (0-based) are kept: the ``def`` line, the focus lines,
    their ``context`` neighbours, then every other line by its distance to the nearest focus
    line (top to bottom when there is none)."""
    spots = sorted({f for f in focus if 0 <= f < n_lines})
    if not spots:
        return list(range(n_lines))

    def distance(i: int) -> int:
        return min(abs(i - f) for f in spots)

    rest = sorted(range(1, n_lines), key=lambda i: (distance(i) > context, distance(i), i))
    return [0, *rest]


def fitted_source(unit: Unit, budget: int, focus: Iterable[int] = (), context: int = 2) -> str:
    """The numbered source within ``budget`` tokens: whole when it fits, else the lines
    :func:`line_priority` puts first (``focus``: 1-based file lines), in file order, with
    ``...`` where lines were left out."""
    lines = numbered_lines(unit)
    costs = [count_tokens(line) + 1 for line in lines]
    if sum(costs) <= budget:
        return "\n".join(lines)
    order = line_priority(len(lines), [f - unit.start_line for f in focus], context)
    kept: set[int] = set()
    used = 0
    for i in order:
        if used + costs[i] + 1 > budget:  # one token kept for a gap marker
            continue
        kept.add(i)
        used += costs[i] + 1
    out: list[str] = []
    for i, line in enumerate(lines):
        if i in kept:
            out.append(line)
        elif not out or out[-1] != "...":
            out.append("...")
    return "\n".join(out)


def cut_lines(lines: list[str], budget: int) -> str:
    """The first of ``lines`` that fit ``budget`` tokens (newlines included), the last one cut."""
    out: list[str] = []
    used = 0
    for line in lines:
        cost = count_tokens(line) + 1
        if used + cost > budget:
            rest = cut_tokens(line, budget - used - 1)
            if rest:
                out.append(rest)
            break
        out.append(line)
        used += cost
    return "\n".join(out)


def trace_lines(test_trace: TestTrace) -> list[str]:
    """The test run's summary line, then one line per failure."""
    lines = [f"tests: {test_trace.passed} passed, {test_trace.failed} failed"]
    for name, exception, line in test_trace.failures:
        where = f" at line {line}" if line is not None else ""
        lines.append(f"  {name}: {exception}{where}")
    return lines


def findings_lines(unit: Unit, findings: Iterable[Finding]) -> list[str]:
    """``findings:`` then one line per unit line with findings (``none`` when there are none)."""
    inside = [f for f in findings if unit.start_line <= f.line <= unit.end_line]
    if not inside:
        return ["findings: none"]
    lines = ["findings:"]
    for line, group in findings_by_line(inside).items():
        notes = "; ".join(f"{f.tool} {f.code} {f.message}" for f in group)
        lines.append(f"  {line}: {notes}")
    return lines


def state_text(
    unit: Unit,
    findings: Iterable[Finding],
    test_trace: TestTrace | None = None,
    cursor_line: int | None = None,
    config: StateConfig = DEFAULT_STATE,
) -> str:
    """The policy's view of ``unit`` within ``config.total_tokens``: header, numbered source,
    the compact node sequence, findings on the unit's lines, and the last test trace when given.

    Trace, findings and nodes are cut to their own budgets; the source gets the rest, whole when
    it fits, else the lines around ``cursor_line`` and the failing lines of the trace (1-based
    file lines) first.
    """
    header = f"unit {unit.qualname} ({unit.kind}, lines {unit.start_line}-{unit.end_line})"
    trace = cut_lines(trace_lines(test_trace), config.trace_tokens) if test_trace else ""
    notes = cut_lines(findings_lines(unit, findings), config.findings_tokens)
    nodes = cut_tokens("nodes: " + compact_nodes(node_sequence(unit)), config.nodes_tokens)
    others = [s for s in (nodes, notes, trace) if s]
    used = count_tokens(header) + sum(count_tokens(s) + 1 for s in others) + 1
    focus = [line for *_, line in (test_trace.failures if test_trace else ()) if line is not None]
    if cursor_line is not None:
        focus.append(cursor_line)
    source = fitted_source(unit, config.total_tokens - used, focus, config.context_lines)
    return "\n".join([header, source, *others])
