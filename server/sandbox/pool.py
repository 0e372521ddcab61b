"""The worker pool: pre-forked worker processes, an LRU result cache, parallel runs."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ALLOW_WEAK_ENV, SandboxConfig
from .docker import DockerRunner, resolve_backend
from .isolation import SANDBOX_UID, Isolation, SandboxUnavailable, detect_isolation
from .result import RunResult, error_result

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger(__name__)

CHILD_SCRIPT = Path(__file__).resolve().parent / "child.py"
"""The stdlib-only worker script (run as ``python -I CHILD_SCRIPT --worker BASE``)."""


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class _Worker:
    """Parent-side handle of one pre-forked worker process."""

    def __init__(self, iso: Isolation, base: str, wall_timeout: float) -> None:
        self._iso = iso
        self._argv = [
            iso.python,
            "-I",
            iso.script or str(CHILD_SCRIPT),
            "--worker",
            iso.base or base,
            *iso.worker_args,
        ]
        self._cwd = base or "/"
        self._grace = wall_timeout + 30.0
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._iso.popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self._cwd,
                env=_clean_env(),
                start_new_session=True,
            )
        return self._proc

    @property
    def pid(self) -> int | None:
        """Process id of the running worker's outermost process, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        """Send one job and wait for its result; restart the worker if it died."""
        for attempt in range(2):
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write((json.dumps(job) + "\n").encode())
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], self._grace)
                line = proc.stdout.readline() if ready else b""
            except (BrokenPipeError, OSError):
                line = b""
            if line:
                return json.loads(line)
            log.warning("sandbox worker did not answer (attempt %d); restarting", attempt + 1)
            self.close()
        return error_result("sandbox")

    def close(self) -> None:
        """Stop the worker (closing stdin ends its loop; kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, TimeoutError, ValueError):
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


Job = tuple[str, "str | Sequence[str]", "str | None"]


def _checked_isolation(cfg: SandboxConfig) -> Isolation:
    """The workers' isolation; weak only when allowed (and then said loudly), else refuse."""
    iso = detect_isolation(cfg.network_isolation, cfg.isolation, cfg.bwrap, cfg.tmp_mb, cfg.seccomp)
    if iso.strong:
        return iso
    if cfg.isolation == "bwrap" or not cfg.allow_weak:
        raise SandboxUnavailable(
            f"the sandbox refuses to run untrusted code: {iso.reason}. Install bubblewrap "
            f"(make install does, as root) or set sandbox.allow_weak = true "
            f"(SandboxConfig(allow_weak=True) or {ALLOW_WEAK_ENV}=1) to run it with namespaces "
            f"and the audit hook only"
        )
    log.warning(
        "SANDBOX IS WEAK: untrusted code runs without bubblewrap (%s); only %s protect this "
        "machine, because sandbox.allow_weak = true",
        iso.reason,
        iso.describe(),
    )
    return iso


class Sandbox:
    """Runs programs' tests in isolation, in parallel, with an LRU result cache."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.backend = resolve_backend(self.cfg.backend)
        self.isolation = (
            _checked_isolation(self.cfg)
            if self.backend == "subprocess"
            else Isolation(("docker",), True, True, "nobody", tool="docker", mounts=True)
        )
        self.executions = 0
        """Programs actually executed (cache misses)."""
        self.cache_hits = 0
        self._cache: collections.OrderedDict[str, RunResult] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._base: str | None = None
        self._runners: queue.SimpleQueue[_Worker | DockerRunner] = queue.SimpleQueue()
        self._all: list[_Worker | DockerRunner] = []
        self._pool: ThreadPoolExecutor | None = None

    def _ensure_started(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                n = max(1, self.cfg.workers)
                if self.backend == "docker":
                    runners: list[_Worker | DockerRunner] = [DockerRunner(self.cfg)] * n
                else:
                    if not self.isolation.base:  # weak: the temp dirs are on the host
                        self._base = tempfile.mkdtemp(
                            prefix="trustfix-sandbox-", dir=self.cfg.temp_dir_root()
                        )
                        os.chmod(self._base, 0o711)
                        if self.isolation.user == "nobody":
                            os.chown(self._base, SANDBOX_UID, SANDBOX_UID)
                    runners = [
                        _Worker(self.isolation, self._base or "", self.cfg.wall_timeout)
                        for _ in range(n)
                    ]
                self._all = runners
                for r in runners:
                    self._runners.put(r)
                self._pool = ThreadPoolExecutor(n, thread_name_prefix="sandbox")
            return self._pool

    def start(self) -> None:
        """Start the worker processes now (otherwise on first use)."""
        self._ensure_started()
        for w in self._all:
            if isinstance(w, _Worker):
                w._start()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (their outermost process, e.g. ``unshare``)."""
        return [w.pid for w in self._all if isinstance(w, _Worker) and w.pid is not None]

    @staticmethod
    def key(program: str, tests: str | Sequence[str], entry_point: str | None) -> str:
        """Cache key: sha256 of (program, tests, entry point)."""
        tests_text = tests if isinstance(tests, str) else list(tests)
        blob = json.dumps([program, tests_text, entry_point], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _lookup(self, key: str) -> RunResult | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
            return hit

    def _store(self, key: str, result: RunResult) -> None:
        with self._lock:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self.cfg.cache_size:
                self._cache.popitem(last=False)

    def _execute(self, job: dict[str, Any]) -> RunResult:
        runner = self._runners.get()
        try:
            data = runner.call(job)
        finally:
            self._runners.put(runner)
        with self._lock:
            self.executions += 1
        return RunResult.from_dict(data)

    def run(
        self, program: str, tests: str | Sequence[str], entry_point: str | None = None
    ) -> RunResult:
        """Run ``tests`` against ``program``; cached by content."""
        return self.run_many([(program, tests, entry_point)])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[RunResult]:
        """Run many (program, tests, entry_point) jobs in parallel over the workers."""
        keys = [self.key(*job) for job in jobs]
        out: dict[str, RunResult] = {}
        todo: dict[str, dict[str, Any]] = {}
        for key, (program, tests, entry_point) in zip(keys, jobs):
            if key in out or key in todo:
                continue
            hit = self._lookup(key)
            if hit is not None:
                out[key] = hit
                continue
            todo[key] = {
                "program": program,
                "tests": tests if isinstance(tests, str) else list(tests),
                "entry_point": entry_point,
                "limits": self.cfg.limits(),
            }
        if todo:
            pool = self._ensure_started()
            for key, result in zip(todo, pool.map(self._execute, todo.values())):
                self._store(key, result)
                out[key] = result
        return [out[k] for k in keys]

    def close(self) -> None:
        """Stop the workers and remove the sandbox's temp dirs."""
        with self._lock:
            pool, self._pool = self._pool, None
            runners, self._all = self._all, []
            base, self._base = self._base, None
        if pool is not None:
            pool.shutdown(wait=True)
        for r in runners:
            r.close()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            log.debug("sandbox close at shutdown failed", exc_info=True)
