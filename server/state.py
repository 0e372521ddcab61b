"""The text the policy sees for one unit: numbered source, syntax-node sequence, findings per
line, and the last test run's trace."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby

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


def compact_nodes(types: Iterable[str]) -> str:
    """Node types joined by spaces, runs of one type written ``type*n``."""
    parts = []
    for kind, run in groupby(types):
        count = sum(1 for _ in run)
        parts.append(kind if count == 1 else f"{kind}*{count}")
    return " ".join(parts)


def numbered_source(unit: Unit) -> str:
    """The unit's lines prefixed by their 1-based line numbers in the file."""
    lines = unit.source.splitlines()
    width = len(str(unit.start_line + len(lines)))
    return "\n".join(f"{unit.start_line + i:>{width}}| {text}" for i, text in enumerate(lines))


def state_text(unit: Unit, findings: Iterable[Finding], test_trace: TestTrace | None = None) -> str:
    """The policy's view of ``unit``: source with line numbers, compact node sequence, findings
    on the unit's lines grouped by line, and the last test trace when one is given."""
    sections = [f"unit {unit.qualname} ({unit.kind}, lines {unit.start_line}-{unit.end_line})"]
    sections.append(numbered_source(unit))
    sections.append("nodes: " + compact_nodes(node_sequence(unit)))
    inside = [f for f in findings if unit.start_line <= f.line <= unit.end_line]
    if inside:
        lines = ["findings:"]
        for line, group in findings_by_line(inside).items():
            notes = "; ".join(f"{f.tool} {f.code} {f.message}" for f in group)
            lines.append(f"  {line}: {notes}")
        sections.append("\n".join(lines))
    else:
        sections.append("findings: none")
    if test_trace is not None:
        lines = [f"tests: {test_trace.passed} passed, {test_trace.failed} failed"]
        for name, exception, line in test_trace.failures:
            where = f" at line {line}" if line is not None else ""
            lines.append(f"  {name}: {exception}{where}")
        sections.append("\n".join(lines))
    return "\n".join(sections)
