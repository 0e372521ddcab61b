"""Static findings on Python source: ruff (JSON on stdin) and semgrep with trustfix's own rules.

Positions are 1-based lines and 0-based character columns (code points).  ruff runs in a few
milliseconds and is cached by content; semgrep costs ~1.5 s a call, so it only ever runs in the
background (:class:`SemgrepCache`), never on a latency path, and never touches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from shutil import which
from typing import Any

log = logging.getLogger(__name__)


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
    semgrep_timeout_s: float = 120.0
    """Wall limit of one semgrep run over a batch of sources."""
    semgrep_batch: int = 64
    """Sources scanned together in one semgrep call by :class:`SemgrepCache` (one start-up cost)."""
    cache_entries: int = 2048
    """Results kept per cache (ruff check, ruff format, semgrep), keyed by content hash."""
    operator_cap: int = 200
    """Repair-operator edits generated per unit before merging (``operator_edits(cap=...)``)."""
    max_candidates: int = 200
    """Candidates returned per unit by ``propose`` after merging and deduplication."""


DEFAULT_CONFIG = AnalysisConfig()


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
    """SHA-256 of the given texts, the key of every cache here."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
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


class LRUCache:
    """A small thread-safe least-recently-used mapping (key -> value)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value cached for ``key`` (now most recent), or None."""
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Cache ``value`` under ``key``, evicting the least recently used beyond ``entries``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()


RUFF_CHECK_CACHE = LRUCache(DEFAULT_CONFIG.cache_entries)
"""``ruff check`` results keyed by (content hash, file name, configuration)."""


def ruff_check_key(source: str, filename: str, config: AnalysisConfig) -> Hashable:
    """The :data:`RUFF_CHECK_CACHE` key of one check."""
    return content_hash(source), filename, config


def ruff_findings(
    source: str, filename: str = "unit.py", config: AnalysisConfig = DEFAULT_CONFIG
) -> list[Finding]:
    """ruff's diagnostics for ``source`` (read from stdin as ``filename``), fixes included.

    Cached by content, file name and configuration.
    """
    key = ruff_check_key(source, filename, config)
    cached = RUFF_CHECK_CACHE.get(key)
    if cached is None:
        result = subprocess.run(
            ruff_check_command(filename, config),
            input=source,
            capture_output=True,
            text=True,
            check=True,
        )
        cached = tuple(parse_ruff_json(result.stdout, config))
        RUFF_CHECK_CACHE.put(key, cached)
    return list(cached)


def rules_path(config: AnalysisConfig = DEFAULT_CONFIG) -> Path:
    """The semgrep rules file in use (the packaged one unless configured)."""
    if config.semgrep_rules is not None:
        return config.semgrep_rules
    return Path(str(resources.files(__package__).joinpath("rules", "refinements.yml")))


def semgrep_env(config: AnalysisConfig = DEFAULT_CONFIG) -> dict[str, str]:
    """The environment semgrep runs in: its home, settings and version cache under the cache dir,
    metrics and version checks off."""
    home = config.cache_dir / "semgrep"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        SEMGREP_SETTINGS_FILE=str(home / "settings.yml"),
        SEMGREP_VERSION_CACHE_PATH=str(home / "version"),
        SEMGREP_LOG_FILE=str(home / "semgrep.log"),
        SEMGREP_ENABLE_VERSION_CHECK="0",
        SEMGREP_SEND_METRICS="off",
    )
    return env


def semgrep_command(paths: Sequence[Path], config: AnalysisConfig = DEFAULT_CONFIG) -> list[str]:
    """The semgrep command line: offline, quiet, JSON, trustfix's rules."""
    return [
        tool_path("semgrep"),
        "scan",
        "--metrics=off",
        "--disable-version-check",
        "--json",
        "--quiet",
        "--no-git-ignore",
        "--config",
        str(rules_path(config)),
        *map(str, paths),
    ]


def _char_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and 0-based character column of a byte offset."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[line_start:offset].decode(errors="replace"))


def _semgrep_finding(item: dict, data: bytes) -> Finding:
    start, end = item["start"]["offset"], item["end"]["offset"]
    line, col = _char_position(data, start)
    end_line, end_col = _char_position(data, end)
    fix_text = item.get("extra", {}).get("fix")
    fix = None if fix_text is None else (Edit(line, col, end_line, end_col, fix_text),)
    code = item["check_id"].rsplit(".", 1)[-1]
    message = item.get("extra", {}).get("message", "")
    return Finding("semgrep", code, message, line, col, end_line, end_col, fix)


def semgrep_findings_many(
    sources: Sequence[str], config: AnalysisConfig = DEFAULT_CONFIG
) -> list[list[Finding]]:
    """Semgrep findings for each of ``sources``, scanned together in one semgrep call (blocking,
    ~1.5 s: never call it on a latency path)."""
    if not sources:
        return []
    scratch = config.cache_dir / "semgrep" / "scan"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        paths = []
        for i, source in enumerate(sources):
            path = Path(tmp) / f"source_{i}.py"
            path.write_text(source, encoding="utf-8")
            paths.append(path)
        result = subprocess.run(
            semgrep_command(paths, config),
            check=False,
            capture_output=True,
            text=True,
            env=semgrep_env(config),
            cwd=tmp,
            timeout=config.semgrep_timeout_s,
        )
        if result.returncode not in (0, 1) or not result.stdout:
            raise RuntimeError(f"semgrep failed ({result.returncode}): {result.stderr[-2000:]}")
        report = json.loads(result.stdout)
        for error in report.get("errors", []):
            log.warning("semgrep: %s", error.get("message", error))
        index = {str(path.resolve()): i for i, path in enumerate(paths)}
        out: list[list[Finding]] = [[] for _ in sources]
        for item in report.get("results", []):
            i = index[str((Path(tmp) / item["path"]).resolve())]
            out[i].append(_semgrep_finding(item, sources[i].encode()))
    for found in out:
        found.sort(key=lambda f: (f.line, f.col, f.code))
    return out


def semgrep_findings(source: str, config: AnalysisConfig = DEFAULT_CONFIG) -> list[Finding]:
    """Semgrep findings for one source (blocking, ~1.5 s)."""
    return semgrep_findings_many([source], config)[0]


class SemgrepCache:
    """Semgrep findings computed in a background thread and cached by content hash.

    ``get`` never blocks: it returns the cached findings, or None after queueing the source.
    Queued sources are scanned in batches of up to ``config.semgrep_batch`` per semgrep call.  A
    failed scan is remembered too (``get`` keeps answering None, ``result`` raises), so a broken
    semgrep is not restarted on every request.
    """

    def __init__(self, config: AnalysisConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._futures: OrderedDict[str, Future[list[Finding]]] = OrderedDict()
        self._pending: OrderedDict[str, str] = OrderedDict()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semgrep")

    def submit(self, source: str) -> Future[list[Finding]]:
        """Queue ``source`` for scanning (no-op when cached or queued); its future."""
        key = content_hash(source)
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                self._futures.move_to_end(key)
                return future
            future = Future()
            self._futures[key] = future
            self._pending[key] = source
            while len(self._futures) > self.config.cache_entries:
                old_key, old = next(iter(self._futures.items()))
                if not old.done():
                    break
                del self._futures[old_key]
        self._executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        with self._lock:
            batch = []
            while self._pending and len(batch) < self.config.semgrep_batch:
                batch.append(self._pending.popitem(last=False))
        if not batch:
            return
        futures = [self._futures[key] for key, _ in batch]
        try:
            results = semgrep_findings_many([source for _, source in batch], self.config)
        except Exception as error:  # noqa: BLE001 - reported through every waiting future
            log.warning("semgrep batch failed: %s", error)
            for future in futures:
                future.set_exception(error)
            return
        for future, found in zip(futures, results, strict=True):
            future.set_result(found)

    def get(self, source: str) -> list[Finding] | None:
        """Cached findings for ``source``, or None (then it is queued); never blocks."""
        future = self.submit(source)
        if future.done() and future.exception() is None:
            return list(future.result())
        return None

    def result(self, source: str, timeout: float | None = None) -> list[Finding]:
        """Findings for ``source``, waiting up to ``timeout`` seconds (TimeoutError after)."""
        try:
            return list(self.submit(source).result(timeout))
        except FutureTimeout as error:
            raise TimeoutError(f"semgrep did not finish within {timeout} s") from error

    def prefetch(self, sources: Iterable[str]) -> None:
        """Queue many sources at once (they share semgrep calls)."""
        for source in sources:
            self.submit(source)

    def close(self) -> None:
        """Stop the background thread (pending scans finish first)."""
        self._executor.shutdown(wait=True)
