"""Candidate refinements of one unit: ruff fixes and ``ruff format``, semgrep autofixes, repair
operators, and (when configured) a generative model.

Every candidate is the whole file after one refinement, with a unified diff and a title.  ruff
runs at most once per (source, unit) for check and once for format, both processes started
together, results cached by content hash; semgrep is read from a :class:`SemgrepCache` only, so
candidate generation never waits for it.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from collections.abc import Sequence
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
from .operators import operator_edits
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
    """One refinement: its title, proposer, unified diff, resulting file text, 1-based line."""

    title: str
    proposer: str
    diff: str
    source: str
    line: int


class GenerativeProposer(Protocol):
    """A model that rewrites a unit: returns whole new texts of ``unit_source`` (the ``def``
    statement), given the policy's state text for it."""

    def propose(self, unit_source: str, state: str) -> list[str]: ...


def common_lines(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many lines ``a`` and ``b`` share at the start, and then at the end."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def unified_diff(old: str, new: str, filename: str = "unit.py", context: int = 3) -> str:
    """The unified diff from ``old`` to ``new``, computed on the changed window only (fast on
    large files); hunk line numbers refer to the whole files."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head, tail = common_lines(a, b)
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
        lines.append(text if text.endswith("\n") else text + "\n\\ No newline at end of file\n")
    return "".join(lines)


def _first_changed_line(old: str, new: str) -> int:
    for i, (x, y) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False)):
        if x != y:
            return i + 1
    return min(len(old.splitlines()), len(new.splitlines())) + 1


def _ruff_outputs(
    source: str, unit: Unit, filename: str, config: AnalysisConfig, check: bool, fmt: bool
) -> tuple[tuple[Finding, ...], str]:
    """ruff's findings for ``source`` (when ``check``) and its formatting of the unit's lines
    (when ``fmt``; "" when ruff cannot format them), from the caches or from ruff check and ruff
    format started side by side."""
    check_key = ruff_check_key(source, filename, config)
    format_key = (content_hash(source), unit.start_line, unit.end_line, filename, config)
    findings = RUFF_CHECK_CACHE.get(check_key) if check else ()
    formatted = RUFF_FORMAT_CACHE.get(format_key) if fmt else ""
    commands = {}
    if findings is None:
        commands["check"] = ruff_check_command(filename, config)
    if formatted is None:
        commands["format"] = ruff_format_command(filename, (unit.start_line, unit.end_line), config)
    running = {}
    for name, command in commands.items():
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdin is not None
        process.stdin.write(source.encode())
        process.stdin.flush()
        running[name] = process
    if "check" in running:
        out, err = running["check"].communicate()
        if running["check"].returncode != 0:
            raise RuntimeError(f"ruff check failed: {err.decode()[-2000:]}")
        findings = tuple(parse_ruff_json(out.decode(), config))
        RUFF_CHECK_CACHE.put(check_key, findings)
    if "format" in running:
        out, _ = running["format"].communicate()
        formatted = out.decode() if running["format"].returncode == 0 else ""
        RUFF_FORMAT_CACHE.put(format_key, formatted)
    return findings, formatted


def _in_unit(finding: Finding, unit: Unit) -> bool:
    return unit.start_line <= finding.line <= unit.end_line


def _fix_candidates(
    source: str, unit: Unit, findings: Sequence[Finding], proposer: str, filename: str
) -> list[Candidate]:
    """One candidate per fixable finding on the unit's lines."""
    out = []
    for finding in findings:
        if finding.fix is None or not _in_unit(finding, unit):
            continue
        try:
            new = apply_edits(source, finding.fix)
        except ValueError:
            continue
        title = f"{finding.code}: {finding.message} (line {finding.line})"
        out.append(
            Candidate(title, proposer, unified_diff(source, new, filename), new, finding.line)
        )
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
    cached, formatted = _ruff_outputs(
        source, unit, filename, config, check=findings is None, fmt=include_format
    )
    ruff = [f for f in (findings if findings is not None else cached) if f.tool == "ruff"]
    out = _fix_candidates(source, unit, ruff, "ruff", filename)
    if include_format and formatted and formatted != source:
        line = _first_changed_line(source, formatted)
        title = f"ruff format {unit.qualname} (lines {unit.start_line}-{unit.end_line})"
        diff = unified_diff(source, formatted, filename)
        out.append(Candidate(title, "ruff-format", diff, formatted, line))
    return out


def semgrep_candidates(
    source: str,
    unit: Unit,
    semgrep: SemgrepCache | None = None,
    findings: Sequence[Finding] | None = None,
    filename: str = "unit.py",
) -> list[Candidate]:
    """One candidate per semgrep autofix on the unit's lines, from ``findings`` or the cache;
    never blocks (nothing cached yet: no candidates, and the scan is queued)."""
    if findings is None:
        findings = semgrep.get(source) if semgrep is not None else None
    if findings is None:
        return []
    found = [f for f in findings if f.tool == "semgrep"]
    return _fix_candidates(source, unit, found, "semgrep", filename)


def operator_candidates(
    source: str, unit: Unit, cap: int = DEFAULT_CONFIG.operator_cap, filename: str = "unit.py"
) -> list[Candidate]:
    """The repair operators' edits inside the unit's byte range."""
    return [
        Candidate(e.title, "operator", unified_diff(source, e.source, filename), e.source, e.line)
        for e in operator_edits(source, unit.start_byte, unit.end_byte, cap)
    ]


def generative_candidates(
    source: str, unit: Unit, model: GenerativeProposer, state: str, filename: str = "unit.py"
) -> list[Candidate]:
    """The model's rewrites of the unit, each put in place of the unit in the file."""
    data = source.encode()
    out = []
    for i, rewrite in enumerate(model.propose(unit.source, state), start=1):
        new = (data[: unit.start_byte] + rewrite.encode() + data[unit.end_byte :]).decode()
        line = _first_changed_line(source, new)
        title = f"rewrite {unit.qualname} by the generative policy (#{i})"
        out.append(Candidate(title, "generative", unified_diff(source, new, filename), new, line))
    return out


def _parses_like(source: str, candidate: str, unit: Unit) -> bool:
    """Whether ``candidate`` has no syntax error (in the unit's region, when ``source`` already
    had errors elsewhere)."""
    if not parse(candidate).root_node.has_error:
        return True
    if not parse(source).root_node.has_error:
        return False
    delta = len(candidate.encode()) - len(source.encode())
    return region_parses(candidate.encode(), unit.start_byte, unit.end_byte + delta)


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
) -> list[Candidate]:
    """Candidates for ``unit`` of ``source`` from the chosen proposers, merged in
    :data:`PROPOSERS` order: duplicates by resulting text keep the first, the original text and
    texts that do not parse are dropped, at most ``cap`` (default ``config.max_candidates``).

    ``findings`` are the ruff and semgrep findings already at hand (ruff's are computed when
    absent; semgrep's come from ``semgrep`` without waiting when absent).  ``generative`` is used
    only when "generative" is among ``proposers``; ``state`` is the text it is shown.
    """
    unknown = set(proposers) - set(PROPOSERS)
    if unknown:
        raise ValueError(f"unknown proposers: {sorted(unknown)}")
    ruff_given = None if findings is None else [f for f in findings if f.tool == "ruff"]
    semgrep_given = None if findings is None else [f for f in findings if f.tool == "semgrep"]
    batches: list[list[Candidate]] = []
    if "ruff" in proposers or "ruff-format" in proposers:
        ruff = ruff_candidates(
            source, unit, ruff_given, filename, config, include_format="ruff-format" in proposers
        )
        batches.append([c for c in ruff if c.proposer in proposers])
    if "semgrep" in proposers:
        batches.append(semgrep_candidates(source, unit, semgrep, semgrep_given or None, filename))
    if "operator" in proposers:
        batches.append(operator_candidates(source, unit, config.operator_cap, filename))
    if "generative" in proposers and generative is not None:
        batches.append(generative_candidates(source, unit, generative, state, filename))
    limit = config.max_candidates if cap is None else cap
    seen = {source}
    merged: list[Candidate] = []
    for candidate in (c for batch in batches for c in batch):
        if len(merged) >= limit:
            break
        if candidate.source in seen:
            continue
        seen.add(candidate.source)
        if _parses_like(source, candidate.source, unit):
            merged.append(candidate)
    return merged


def clear_caches() -> None:
    """Forget every cached ruff result and parse (for cold-start measurements)."""
    RUFF_CHECK_CACHE.clear()
    RUFF_FORMAT_CACHE.clear()
    parse.cache_clear()
