"""Candidate refinements of one unit: ruff fixes and ``ruff format``, semgrep autofixes, repair
edits (:mod:`trustfix.server.repairs`), and (when configured) a generative model.

Every candidate is the whole file after one refinement, with a unified diff and a title.  ruff
runs at most once per (source, unit) for check and once for format, both processes started
together, results cached by content hash; semgrep is read from a :class:`SemgrepCache` only, so
candidate generation never waits for it.  The repair edits are generated while ruff runs; the
candidate budget then picks what fills the cap, and only those get a diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import subprocess
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from .findings import (
    DEFAULT_CONFIG,
    RUFF_CHECK_CACHE,
    AnalysisConfig,
    Finding,
    LRUCache,
    SemgrepCache,
    apply_edits,
    content_hash,
    parse_ruff_json,
    ruff_check_command,
    ruff_check_key,
    ruff_format_command,
)
from .repairs import DEFAULT_BUDGET, CandidateBudget, allocate, edit_parses, repair_edits
from .units import Unit, parse, region_parses

PROPOSERS: tuple[str, ...] = ("ruff", "ruff-format", "semgrep", "operator", "generative")
"""Proposer names, in the order their candidates are merged (the first of duplicates is kept)."""
DEFAULT_PROPOSERS: tuple[str, ...] = ("ruff", "ruff-format", "semgrep", "operator")
"""Proposers used by :func:`propose` unless told otherwise (the generative one is opt-in)."""

RUFF_FORMAT_CACHE = LRUCache(DEFAULT_CONFIG.cache_entries)
"""``ruff format --range`` results keyed by (content hash, line range, file name, configuration);
the value is the formatted source, or "" when ruff could not format it."""

_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


@dataclass(frozen=True)
class Candidate:
    """One refinement: its title, proposer, unified diff, resulting file text, 1-based line,
    family (a repair family, a ruff/semgrep rule code, or the proposer's name) and rank among
    its family's alternatives at that site (0 first)."""

    title: str
    proposer: str
    diff: str
    source: str
    line: int
    family: str = ""
    rank: int = 0


@dataclass(frozen=True)
class _Draft:
    """A candidate before the budget: everything but the diff (computed for the kept ones)."""

    title: str
    proposer: str
    source: str
    line: int
    family: str
    rank: int = 0

    def candidate(self, old: str, filename: str) -> Candidate:
        """The candidate, with its diff from ``old``."""
        diff = unified_diff(old, self.source, filename)
        return Candidate(
            self.title, self.proposer, diff, self.source, self.line, self.family, self.rank
        )


class GenerativeProposer(Protocol):
    """A model that rewrites a unit: returns whole new texts of ``unit_source`` (the ``def``
    statement), given the policy's state text for it."""

    def propose(self, unit_source: str, state: str) -> list[str]: ...


def common_lines(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many lines ``a`` and ``b`` share at the start, and then at the end."""
    shortest = min(len(a), len(b))
    head = 0
    while head < shortest and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shortest - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def _unified_range(start: int, stop: int) -> str:
    """A hunk's line range as difflib writes it (1-based start, length omitted when 1)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def _diff_line(prefix: str, line: str) -> str:
    return (
        prefix + line if line.endswith("\n") else f"{prefix}{line}\n\\ No newline at end of file\n"
    )


def _one_hunk(a: list[str], b: list[str], head: int, tail: int, filename: str, context: int) -> str:
    """The diff of a change whose old and new windows share no line: one hunk, as difflib
    writes it (without running its matcher)."""
    stop_a, stop_b = len(a) - tail, len(b) - tail
    lo, after = max(0, head - context), min(context, tail)
    lines = [f"--- a/{filename}\n", f"+++ b/{filename}\n"]
    lines.append(
        f"@@ -{_unified_range(lo, stop_a + after)} +{_unified_range(lo, stop_b + after)} @@\n"
    )
    lines += [_diff_line(" ", line) for line in a[lo:head]]
    lines += [_diff_line("-", line) for line in a[head:stop_a]]
    lines += [_diff_line("+", line) for line in b[head:stop_b]]
    lines += [_diff_line(" ", line) for line in a[stop_a : stop_a + after]]
    return "".join(lines)


def unified_diff(old: str, new: str, filename: str = "unit.py", context: int = 3) -> str:
    """The unified diff from ``old`` to ``new`` (difflib's output, a missing final newline marked
    ``\\ No newline at end of file``), computed on the changed window only (fast on large files;
    one hunk written directly when the old and new lines share none); hunk line numbers refer to
    the whole files."""
    if old == new:
        return ""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head, tail = common_lines(a, b)
    if set(a[head : len(a) - tail]).isdisjoint(b[head : len(b) - tail]):
        return _one_hunk(a, b, head, tail, filename, context)
    start = max(0, head - context)
    stop_a, stop_b = len(a) - max(0, tail - context), len(b) - max(0, tail - context)
    lines = []
    for text in difflib.unified_diff(
        a[start:stop_a], b[start:stop_b], f"a/{filename}", f"b/{filename}", n=context
    ):
        match = _HUNK.match(text)
        if match:
            old_start, new_start = int(match[1]) + start, int(match[3]) + start
            text = f"@@ -{old_start}{match[2] or ''} +{new_start}{match[4] or ''} @@\n"
            lines.append(text)
        else:
            lines.append(_diff_line("", text))
    return "".join(lines)


def _first_changed_line(old: str, new: str) -> int:
    for i, (x, y) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False)):
        if x != y:
            return i + 1
    return min(len(old.splitlines()), len(new.splitlines())) + 1


class _RuffRun:
    """ruff's findings for ``source`` (when ``check``) and its formatting of the unit's lines
    (when ``fmt``; "" when ruff cannot format them): from the caches, or from ruff check and
    ruff format started side by side when this is made and read by :meth:`result` (so the
    caller may work meanwhile)."""

    def __init__(
        self,
        source: str,
        unit: Unit,
        filename: str,
        config: AnalysisConfig,
        check: bool,
        fmt: bool,
    ) -> None:
        self.check_key = ruff_check_key(source, filename, config)
        self.format_key = (content_hash(source), unit.start_line, unit.end_line, filename, config)
        self.config = config
        self.findings = RUFF_CHECK_CACHE.get(self.check_key) if check else ()
        self.formatted = RUFF_FORMAT_CACHE.get(self.format_key) if fmt else ""
        commands = {}
        if self.findings is None:
            commands["check"] = ruff_check_command(filename, config)
        if self.formatted is None:
            lines = (unit.start_line, unit.end_line)
            commands["format"] = ruff_format_command(filename, lines, config)
        self.running = {}
        for name, command in commands.items():
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert process.stdin is not None
            process.stdin.write(source.encode())
            process.stdin.flush()
            self.running[name] = process

    def result(self) -> tuple[tuple[Finding, ...], str]:
        """The findings and the formatted source (waiting for ruff when it runs)."""
        if "check" in self.running:
            process = self.running.pop("check")
            out, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"ruff check failed: {err.decode()[-2000:]}")
            self.findings = tuple(parse_ruff_json(out.decode(), self.config))
            RUFF_CHECK_CACHE.put(self.check_key, self.findings)
        if "format" in self.running:
            process = self.running.pop("format")
            out, _ = process.communicate()
            self.formatted = out.decode() if process.returncode == 0 else ""
            RUFF_FORMAT_CACHE.put(self.format_key, self.formatted)
        return self.findings or (), self.formatted or ""


def _in_unit(finding: Finding, unit: Unit) -> bool:
    return unit.start_line <= finding.line <= unit.end_line


def _fixes(source: str, unit: Unit, findings: Sequence[Finding], proposer: str) -> list[_Draft]:
    """One draft per fixable finding on the unit's lines (family: the rule code)."""
    out = []
    for finding in findings:
        if finding.fix is None or not _in_unit(finding, unit):
            continue
        try:
            new = apply_edits(source, finding.fix)
        except ValueError:
            continue
        title = f"{finding.code}: {finding.message} (line {finding.line})"
        out.append(_Draft(title, proposer, new, finding.line, finding.code))
    return out


def _ruff_drafts(
    source: str,
    unit: Unit,
    run: _RuffRun,
    findings: Sequence[Finding] | None,
    include_format: bool,
) -> list[_Draft]:
    cached, formatted = run.result()
    ruff = [f for f in (findings if findings is not None else cached) if f.tool == "ruff"]
    out = _fixes(source, unit, ruff, "ruff")
    if include_format and formatted and formatted != source:
        line = _first_changed_line(source, formatted)
        title = f"ruff format {unit.qualname} (lines {unit.start_line}-{unit.end_line})"
        out.append(_Draft(title, "ruff-format", formatted, line, "ruff-format"))
    return out


def ruff_candidates(
    source: str,
    unit: Unit,
    findings: Sequence[Finding] | None = None,
    filename: str = "unit.py",
    config: AnalysisConfig = DEFAULT_CONFIG,
    include_format: bool = True,
) -> list[Candidate]:
    """One candidate per fixable ruff diagnostic on the unit's lines, then ``ruff format`` of the
    unit's lines when that changes anything.  ``findings`` (ruff's, e.g. already computed for the
    state) saves the check; the format result is cached by content."""
    run = _RuffRun(source, unit, filename, config, check=findings is None, fmt=include_format)
    drafts = _ruff_drafts(source, unit, run, findings, include_format)
    return [d.candidate(source, filename) for d in drafts]


def semgrep_candidates(
    source: str,
    unit: Unit,
    semgrep: SemgrepCache | None = None,
    findings: Sequence[Finding] | None = None,
    filename: str = "unit.py",
) -> list[Candidate]:
    """One candidate per semgrep autofix on the unit's lines, from ``findings`` or the cache;
    never blocks (nothing cached yet: no candidates, and the scan is queued)."""
    return [d.candidate(source, filename) for d in _semgrep_drafts(source, unit, semgrep, findings)]


def _semgrep_drafts(
    source: str, unit: Unit, semgrep: SemgrepCache | None, findings: Sequence[Finding] | None
) -> list[_Draft]:
    if findings is None:
        findings = semgrep.get(source) if semgrep is not None else None
    if findings is None:
        return []
    return _fixes(source, unit, [f for f in findings if f.tool == "semgrep"], "semgrep")


def _repair_drafts(source: str, unit: Unit, cap: int | None, check: bool) -> list[_Draft]:
    edits = repair_edits(
        source,
        unit.start_byte,
        unit.end_byte,
        cap=sys.maxsize if cap is None else cap,
        check=check,
    )
    return [_Draft(e.title, "operator", e.source, e.line, e.family, e.rank) for e in edits]


def operator_candidates(
    source: str, unit: Unit, cap: int | None = None, filename: str = "unit.py"
) -> list[Candidate]:
    """The repair edits inside the unit's byte range (at most ``cap``, in source order)."""
    return [d.candidate(source, filename) for d in _repair_drafts(source, unit, cap, True)]


def _generative_drafts(
    source: str, unit: Unit, model: GenerativeProposer, state: str
) -> list[_Draft]:
    data = source.encode()
    out = []
    for i, rewrite in enumerate(model.propose(unit.source, state), start=1):
        new = (data[: unit.start_byte] + rewrite.encode() + data[unit.end_byte :]).decode()
        line = _first_changed_line(source, new)
        title = f"rewrite {unit.qualname} by the generative policy (#{i})"
        out.append(_Draft(title, "generative", new, line, "generative"))
    return out


def generative_candidates(
    source: str, unit: Unit, model: GenerativeProposer, state: str, filename: str = "unit.py"
) -> list[Candidate]:
    """The model's rewrites of the unit, each put in place of the unit in the file."""
    return [d.candidate(source, filename) for d in _generative_drafts(source, unit, model, state)]


def _parses_like(source: str, candidate: str, unit: Unit) -> bool:
    """Whether ``candidate`` has no syntax error (in the unit's region, when ``source`` already
    had errors elsewhere)."""
    if edit_parses(source, candidate, unit.start_byte, unit.end_byte):
        return True
    if not parse(source).root_node.has_error:
        return False
    delta = len(candidate.encode()) - len(source.encode())
    return region_parses(candidate.encode(), unit.start_byte, unit.end_byte + delta)


def _distinct_titles(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with a repeated title numbered (``... (#2)``), so titles stay distinct."""
    counts: dict[str, int] = {}
    out = []
    for c in candidates:
        counts[c.title] = counts.get(c.title, 0) + 1
        n = counts[c.title]
        out.append(c if n == 1 else dataclasses.replace(c, title=f"{c.title} (#{n})"))
    return out


def propose(
    source: str,
    unit: Unit,
    findings: Sequence[Finding] | None = None,
    semgrep: SemgrepCache | None = None,
    proposers: Sequence[str] = DEFAULT_PROPOSERS,
    cap: int | None = None,
    generative: GenerativeProposer | None = None,
    state: str = "",
    filename: str = "unit.py",
    config: AnalysisConfig = DEFAULT_CONFIG,
    *,
    budget: CandidateBudget = DEFAULT_BUDGET,
    cursor_line: int | None = None,
    failing_lines: Collection[int] = (),
) -> list[Candidate]:
    """Candidates for ``unit`` of ``source`` from the chosen proposers: duplicates by resulting
    text keep the first in :data:`PROPOSERS` order, the original text and texts that do not
    parse are dropped, and at most ``cap`` (default ``config.max_candidates``) are kept by the
    candidate budget (:func:`~trustfix.server.repairs.allocate`): round-robin over (proposer,
    family) groups with quotas, lines in ``failing_lines`` (1-based, from a failing test's
    trace) first, then lines near ``cursor_line``, then the rest.  Titles are made distinct.

    ``findings`` are the ruff and semgrep findings already at hand (ruff's are computed when
    absent, while the repair edits are generated; semgrep's come from ``semgrep`` without
    waiting when absent).  ``generative`` is used only when "generative" is among
    ``proposers``; ``state`` is the text it is shown.
    """
    unknown = set(proposers) - set(PROPOSERS)
    if unknown:
        raise ValueError(f"unknown proposers: {sorted(unknown)}")
    ruff_given = None if findings is None else [f for f in findings if f.tool == "ruff"]
    semgrep_given = None if findings is None else [f for f in findings if f.tool == "semgrep"]
    with_ruff = "ruff" in proposers or "ruff-format" in proposers
    run = (
        _RuffRun(
            source, unit, filename, config, check=ruff_given is None, fmt="ruff-format" in proposers
        )
        if with_ruff
        else None
    )
    repairs = _repair_drafts(source, unit, None, False) if "operator" in proposers else []
    drafts: list[_Draft] = []
    if run is not None:
        drafts += [
            d
            for d in _ruff_drafts(source, unit, run, ruff_given, "ruff-format" in proposers)
            if d.proposer in proposers
        ]
    if "semgrep" in proposers:
        drafts += _semgrep_drafts(source, unit, semgrep, semgrep_given or None)
    drafts += repairs
    if "generative" in proposers and generative is not None:
        drafts += _generative_drafts(source, unit, generative, state)
    seen = {source}
    unique = []
    for draft in drafts:
        if draft.source not in seen:
            seen.add(draft.source)
            unique.append(draft)
    limit = config.max_candidates if cap is None else cap
    chosen = allocate(
        unique,
        limit,
        budget,
        failing_lines,
        cursor_line,
        accept=lambda d: _parses_like(source, d.source, unit),
    )
    return _distinct_titles([d.candidate(source, filename) for d in chosen])


def clear_caches() -> None:
    """Forget every cached ruff result and parse (for cold-start measurements)."""
    RUFF_CHECK_CACHE.clear()
    RUFF_FORMAT_CACHE.clear()
    parse.cache_clear()
