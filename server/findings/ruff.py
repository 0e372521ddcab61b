"""ruff: the command lines (check as JSON on stdin, format of a line range), its JSON parsed
into findings, and the cached check that the server calls on every ranking (a few ms)."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Hashable

from .cache import LRUCache
from .config import DEFAULT_CONFIG, AnalysisConfig, tool_path
from .model import Edit, Finding, content_hash

log = logging.getLogger(__name__)


def _ruff_common(config: AnalysisConfig) -> list[str]:
    return [
        "--isolated",
        "--no-cache",
        "--line-length",
        str(config.line_length),
        "--target-version",
        config.target_version,
        "--preview" if config.ruff_preview else "--no-preview",
    ]


def ruff_check_command(filename: str, config: AnalysisConfig = DEFAULT_CONFIG) -> list[str]:
    """The ``ruff check`` command line that reads a source on stdin and writes JSON."""
    command = [tool_path("ruff"), "check", *_ruff_common(config), "--exit-zero"]
    command += ["--output-format", "json", "--select", ",".join(config.ruff_select)]
    if config.ruff_ignore:
        command += ["--ignore", ",".join(config.ruff_ignore)]
    return [*command, "--stdin-filename", filename, "-"]


def ruff_format_command(
    filename: str, lines: tuple[int, int] | None = None, config: AnalysisConfig = DEFAULT_CONFIG
) -> list[str]:
    """The ``ruff format`` command line for stdin, limited to 1-based inclusive ``lines``."""
    command = [tool_path("ruff"), "format", *_ruff_common(config)]
    if lines is not None:
        command.append(f"--range={lines[0]}-{lines[1]}")
    return [*command, "--stdin-filename", filename, "-"]


def _position(location: dict[str, int]) -> tuple[int, int]:
    return location["row"], location["column"] - 1


def parse_ruff_json(text: str, config: AnalysisConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Findings from ``ruff check --output-format json`` output."""
    allowed = {"safe", "unsafe"} if config.ruff_unsafe_fixes else {"safe"}
    findings = []
    for item in json.loads(text or "[]"):
        fix = item.get("fix")
        edits = None
        if fix and fix.get("applicability") in allowed and fix.get("edits"):
            edits = tuple(
                Edit(*_position(e["location"]), *_position(e["end_location"]), e["content"])
                for e in fix["edits"]
            )
        line, col = _position(item["location"])
        end_line, end_col = _position(item["end_location"])
        code = item.get("code") or "syntax-error"
        findings.append(Finding("ruff", code, item["message"], line, col, end_line, end_col, edits))
    return findings


RUFF_CHECK_CACHE = LRUCache(DEFAULT_CONFIG.cache_entries)
"""``ruff check`` results keyed by (content hash, file name, configuration)."""


def ruff_check_key(source: str, filename: str, config: AnalysisConfig) -> Hashable:
    """The :data:`RUFF_CHECK_CACHE` key of one check."""
    return content_hash(source), filename, config


def ruff_findings(
    source: str, filename: str = "unit.py", config: AnalysisConfig = DEFAULT_CONFIG
) -> list[Finding]:
    """ruff's diagnostics for ``source`` (read from stdin as ``filename``), fixes included.

    Cached by content, file name and configuration.  A ruff that crashes (it aborts on a stack
    overflow for very deep expressions), fails or outlives ``config.ruff_timeout_s`` reports no
    findings, logged once per content: hostile input costs one ruff run, never an error.
    """
    key = ruff_check_key(source, filename, config)
    cached = RUFF_CHECK_CACHE.get(key)
    if cached is None:
        cached = tuple(_run_ruff_check(source, filename, config))
        RUFF_CHECK_CACHE.put(key, cached)
    return list(cached)


def _run_ruff_check(source: str, filename: str, config: AnalysisConfig) -> list[Finding]:
    """One ``ruff check`` of ``source``; [] (with a warning) when ruff crashes or times out."""
    try:
        result = subprocess.run(
            ruff_check_command(filename, config),
            input=source.encode("utf-8", "replace"),
            capture_output=True,
            check=False,
            timeout=config.ruff_timeout_s,
        )
    except subprocess.TimeoutExpired:
        log.warning(
            "ruff check of %s gave up after %.0f s: no ruff findings",
            filename,
            config.ruff_timeout_s,
        )
        return []
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.warning(
            "ruff check of %s failed (exit %d: %s): no ruff findings",
            filename,
            result.returncode,
            reason[0][:200],
        )
        return []
    return parse_ruff_json(result.stdout.decode(errors="replace"), config)
