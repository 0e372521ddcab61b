"""How static analysis runs: :class:`AnalysisConfig` (every setting with its default) and where
the analysers' executables are."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trustfix"


@dataclass(frozen=True)
class AnalysisConfig:
    """Server-side settings of static analysis and candidate generation."""

    ruff_select: tuple[str, ...] = ("E", "W", "F", "SIM", "UP", "B", "C4", "PIE", "RET")
    """ruff rule prefixes checked: pycodestyle (E, W), pyflakes (F) and refinement-oriented
    families (flake8-simplify, pyupgrade, bugbear, comprehensions, pie, return)."""
    ruff_ignore: tuple[str, ...] = ("E501",)
    """ruff rules never reported; long lines have no automatic fix and flood docstring-heavy code."""
    ruff_preview: bool = True
    """Run ruff with ``--preview``: pycodestyle's whitespace rules (E1, E2, E3) with fixes are
    preview-only in ruff, and they are the style violations refinement removes."""
    ruff_unsafe_fixes: bool = True
    """Offer ruff's *unsafe* fixes too (e.g. ``== None`` -> ``is None``): every candidate is
    reviewed and tested before it is kept, so unsafe only means "may change behaviour", which the
    tests and the reviewer judge.  Display-only fixes are never offered."""
    line_length: int = 100
    """Line length for ruff check and ``ruff format``."""
    target_version: str = "py310"
    """Python version that ruff's pyupgrade rules and the formatter target."""
    semgrep_rules: Path | None = None
    """Semgrep rules file; None: ``server/rules/refinements.yml`` shipped in the package."""
    cache_dir: Path = field(default_factory=_default_cache_dir)
    """trustfix's cache folder (``$XDG_CACHE_HOME/trustfix``); semgrep's home, settings and
    version cache live under ``cache_dir/semgrep`` so nothing is written to the user's home."""
    ruff_timeout_s: float = 10.0
    """Wall limit of one ``ruff check`` run; past it the source gets no ruff findings."""
    semgrep_timeout_s: float = 120.0
    """Wall limit of one semgrep run over a batch of sources."""
    semgrep_max_chars: int = 100_000
    """Longer sources get no semgrep findings (never scanned: semgrep's per-rule timeouts make
    a large scan take minutes of background CPU)."""
    semgrep_batch: int = 64
    """Sources scanned together in one semgrep call by :class:`SemgrepCache` (one start-up cost)."""
    cache_entries: int = 2048
    """Results kept per cache (ruff check, ruff format, semgrep), keyed by content hash."""
    operator_cap: int = 200
    """Repair-operator edits generated per unit before merging (``operator_edits(cap=...)``)."""
    max_candidates: int = 200
    """Candidates returned per unit by ``propose`` after merging and deduplication."""


DEFAULT_CONFIG = AnalysisConfig()


def tool_path(name: str) -> str:
    """The executable ``name`` beside this interpreter (the virtualenv's), else on PATH."""
    if name == "ruff":
        try:
            from ruff.__main__ import find_ruff_bin

            return os.fsdecode(find_ruff_bin())
        except (ImportError, FileNotFoundError):
            pass
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return found
