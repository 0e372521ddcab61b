"""semgrep with trustfix's own rules: offline command line and environment, batched scans, and
:class:`SemgrepCache`, which scans in a background thread (~1.5 s a call: never on a latency
path)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from importlib import resources
from pathlib import Path

from .config import DEFAULT_CONFIG, AnalysisConfig, tool_path
from .model import Edit, Finding, content_hash

log = logging.getLogger(__name__)


def rules_path(config: AnalysisConfig = DEFAULT_CONFIG) -> Path:
    """The semgrep rules file in use (the packaged one unless configured)."""
    if config.semgrep_rules is not None:
        return config.semgrep_rules
    server_package = __package__.rpartition(".")[0]
    return Path(str(resources.files(server_package).joinpath("rules", "refinements.yml")))


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
            path.write_text(source, encoding="utf-8", errors="replace")
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
        """Queue ``source`` for scanning (no-op when cached or queued); its future.  A source
        over ``config.semgrep_max_chars`` is not scanned: its future holds no findings."""
        if len(source) > self.config.semgrep_max_chars:
            skipped: Future[list[Finding]] = Future()
            skipped.set_result([])
            return skipped
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
        except Exception as error:
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

    def close(self) -> None:
        """Stop the background thread (pending scans finish first)."""
        self._executor.shutdown(wait=True)
