"""What the analysers report: findings, the edits that fix them, and helpers over both.

Positions are 1-based lines and 0-based character columns (code points).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Replace the text between (line, col) and (end_line, end_col) with ``content``."""

    line: int
    col: int
    end_line: int
    end_col: int
    content: str


@dataclass(frozen=True)
class Finding:
    """One diagnostic: its tool, rule code, message, range, and the edits that fix it (or None)."""

    tool: str
    code: str
    message: str
    line: int
    col: int
    end_line: int
    end_col: int
    fix: tuple[Edit, ...] | None = None


def content_hash(*parts: str) -> str:
    """SHA-256 of the given texts, the key of every cache here (lone surrogates included)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line (index 0 is line 1)."""
    starts = [0]
    for i, ch in enumerate(source):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def apply_edits(source: str, edits: Iterable[Edit]) -> str:
    """``source`` with non-overlapping ``edits`` applied (positions refer to the original)."""
    starts = _offsets(source)

    def offset(line: int, col: int) -> int:
        return len(source) if line > len(starts) else starts[line - 1] + col

    out, last = [], 0
    for edit in sorted(edits, key=lambda e: (e.line, e.col, e.end_line, e.end_col)):
        start, end = offset(edit.line, edit.col), offset(edit.end_line, edit.end_col)
        if start < last:
            raise ValueError(f"overlapping edits at line {edit.line}")
        out += [source[last:start], edit.content]
        last = end
    out.append(source[last:])
    return "".join(out)


def findings_by_line(findings: Iterable[Finding]) -> dict[int, list[Finding]]:
    """Findings grouped by their first line, each group in column order."""
    grouped: dict[int, list[Finding]] = {}
    for finding in sorted(findings, key=lambda f: (f.line, f.col, f.tool, f.code)):
        grouped.setdefault(finding.line, []).append(finding)
    return grouped
