"""Sandboxed test execution: run a program's tests, return per-test pass/fail.

Tests
-----
``tests`` is either one source string or a list of source strings.

* A string that defines ``check(candidate)`` (HumanEval style) is split into one test per
  top-level statement of ``check`` that contains an ``assert`` (a ``for`` loop of asserts is one
  test; ``assert True`` is dropped); the other statements of ``check`` (imports, assignments) run
  in order as setup.  ``candidate`` is bound to the program's ``entry_point`` (or to the argument
  of a top-level ``check(NAME)`` call, which is not executed itself).
* A string that defines top-level ``test_*`` functions (pytest style, no fixtures): each function
  is one test; the rest of the string is setup.
* Any other string: each top-level statement containing an ``assert`` is one test.
* A list of strings: each string is handled as above (a string without ``test_*`` functions or
  ``check`` counts as one test as a whole).

Everything runs in one namespace: the program's globals, then the tests' module-level setup.
``TestResult.line`` is the program line of the innermost traceback frame inside the program
(``None`` when the exception never passed through program code, e.g. a wrong return value);
test names carry the test's own line (``check:L12``).

Containment (what is applied is detected once per process and recorded in
``Sandbox.isolation``)
----------------------------------------------------------------------------------------------
* A pre-forked pool: ``workers`` long-lived worker processes (this file run as a script) each of
  which forks a fresh child per program; the child applies the limits and runs the tests, so a
  program costs a fork, not a Python start-up.
* Workers start under ``unshare --net --pid --fork --kill-child`` where it works: an empty network
  namespace (no interface but a down loopback) and a PID namespace whose init is the worker.
  After every program the worker, being PID 1 there, SIGKILLs every other process in that
  namespace (``kill(-1)``), so nothing a program spawned survives it, not even a
  ``setsid``-escaped fork.  Without a PID namespace the child's process group is killed.
* As root the worker additionally runs (``setpriv``) as the ``nobody`` user keeping only
  CAP_DAC_READ_SEARCH (so it can still import the interpreter's modules under a private home):
  RLIMIT_NPROC is then enforced by the kernel (it is not for root) and every file outside the
  temp dir is read-only to the program.  As a non-root user the worker runs in a user namespace
  (``unshare --map-root-user``) and RLIMIT_NPROC applies as is.
* The child: new session (``setsid``), stdin/stdout/stderr on /dev/null, a fresh temp dir as cwd,
  HOME and TMPDIR, a scrubbed environment, RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC,
  no core files, and an audit hook (``sys.addaudithook``) that blocks: opening for writing,
  creating, removing, renaming or changing files outside the temp dir; process creation
  (``os.fork``, ``subprocess.Popen``, ``os.system``, ``os.exec*``, ``os.posix_spawn``,
  ``os.spawn*``) and signals; socket connect/bind/send and name lookups; ctypes; changing rlimits;
  importing ``ctypes``, ``_posixsubprocess`` and other escape hatches (so ``import subprocess``
  fails inside the sandbox).  A blocked call raises ``SandboxViolation`` and fails the running
  test even if the program catches it.
* The worker kills the child's group at ``wall_timeout``; RLIMIT_CPU stops busy loops sooner.
* The containment protects the machine, not the verdict: code written to forge its own results
  (by writing to the result pipe) is out of scope.

``RunResult.error`` names what went wrong with the run as a whole: ``timeout`` (wall clock or
CPU), ``memory`` (a MemoryError or the address-space limit), ``file-size``, ``killed`` (another
signal), ``syntax`` (the program does not compile), ``load`` (it raises on import), ``blocked``
(a sandbox violation), ``exit`` (it exited before the tests finished), ``tests`` (the tests do
not parse), ``sandbox`` (the worker itself failed); ``None`` for a run whose tests merely fail.

Docker backend: one ``docker run --network none --memory ... --pids-limit ... --read-only``
container per program (``python:3.11-slim``), running this file with ``--once``, which applies
the same child limits inside the container; ``backend="auto"`` chooses it only when
``docker info`` answers.

This module imports only the standard library: it is also the worker script.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import queue
import resource
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

    from typing_extensions import Self

log = logging.getLogger(__name__)

PROGRAM_FILE = "program.py"
"""File name the program is compiled under (tracebacks name it)."""
TESTS_FILE = "tests.py"
"""File name the tests are compiled under."""
SANDBOX_UID = 65534
"""The ``nobody`` user a root worker drops to."""
_MESSAGE_CHARS = 300
_MAX_STREAM_BYTES = 8 << 20
_RESULT_FD = 3
_PRELOAD = (
    "typing", "math", "re", "hashlib", "random", "itertools", "collections", "functools",
    "string", "heapq", "bisect", "fractions", "statistics", "copy", "operator", "decimal",
    "datetime", "json",
)  # fmt: skip
_BLOCKED_MODULES = frozenset(
    {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi",
     "_testinternalcapi"}
)  # fmt: skip
_BLOCKED_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
     "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
     "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
     "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
     "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata",
     "resource.setrlimit", "resource.prlimit", "os.setuid", "os.setgid", "webbrowser.open",
     "os.startfile", "gc.get_objects", "gc.get_referrers", "gc.get_referents"}
)  # fmt: skip
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.link": (0, 1), "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,),
    "os.truncate": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
    "os.setxattr": (0,), "os.removexattr": (0,), "shutil.rmtree": (0,),
    "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,),
    "shutil.move": (0, 1), "shutil.chown": (0,),
}  # fmt: skip
# ``subprocess`` is imported only inside parent-side functions: this file is also the worker
# script, and a module the worker has loaded is reachable from a sandboxed program without an
# import event (``subprocess._posixsubprocess.fork_exec`` would bypass the audit hook).
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Raised inside the sandbox when the program attempts something the sandbox forbids."""


@dataclass
class SandboxConfig:
    """Limits and backend of the test sandbox."""

    cpu_seconds: int = 2
    """RLIMIT_CPU of one program run (whole seconds; SIGKILL one second later)."""
    memory_mb: int = 512
    """RLIMIT_AS of one program run, in MiB."""
    file_size_mb: int = 8
    """RLIMIT_FSIZE: largest file a program may write, in MiB."""
    max_processes: int = 64
    """RLIMIT_NPROC: processes of the sandbox user; the kernel ignores it for root, so a root
    worker drops to ``nobody`` first (see the module docstring)."""
    wall_timeout: float = 5.0
    """Wall-clock seconds after which the program's process group is killed."""
    workers: int = 2
    """Pre-forked worker processes (one per core), i.e. programs run in parallel."""
    network_isolation: bool = True
    """Start workers in an empty network namespace (``unshare --net``) when the kernel allows."""
    backend: str = "auto"
    """``auto`` (Docker when ``docker info`` answers, else subprocess), ``subprocess``, ``docker``."""
    docker_image: str = "python:3.11-slim"
    """Image of the Docker backend."""
    cache_size: int = 20_000
    """Results kept in the in-memory LRU cache keyed by sha256 of (program, tests, entry point)."""
    temp_root: str = ""
    """Where the per-program temp dirs are made; empty: /dev/shm when writable (a tmpfs: creating
    and removing a dir there costs microseconds, on a journaling disk milliseconds), else the
    system temp dir."""

    def temp_dir_root(self) -> str:
        """The directory under which the sandbox's temp dirs go."""
        if self.temp_root:
            return self.temp_root
        shm = "/dev/shm"
        return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()

    def limits(self) -> dict[str, Any]:
        """The limits a worker applies to each child."""
        return {
            "cpu_seconds": int(self.cpu_seconds),
            "memory_mb": int(self.memory_mb),
            "file_size_mb": int(self.file_size_mb),
            "max_processes": int(self.max_processes),
            "wall_timeout": float(self.wall_timeout),
        }


@dataclass
class TestResult:
    """Outcome of one test."""

    __test__ = False

    name: str
    passed: bool
    exception: str | None = None
    """Exception type name (``AssertionError``, ``SandboxViolation``, ``Timeout``...)."""
    line: int | None = None
    """Program line of the innermost frame inside the program, if the exception passed there."""
    message: str = ""


@dataclass
class RunResult:
    """Outcome of running one program's tests."""

    passed: int
    failed: int
    tests: list[TestResult] = field(default_factory=list)
    error: str | None = None
    """Reason the run as a whole went wrong (see the module docstring), or None."""
    duration: float = 0.0
    """Wall seconds the run took in the sandbox (a cache hit returns the original run's)."""

    @property
    def all_passed(self) -> bool:
        """True when there was at least one test, every test passed and nothing went wrong."""
        return self.error is None and self.failed == 0 and self.passed > 0

    @property
    def share_passed(self) -> float:
        """Fraction of the tests that passed (0 when there are none)."""
        total = self.passed + self.failed
        return self.passed / total if total else 0.0

    def summary(self, max_failures: int = 5) -> str:
        """A short trace for the policy's state: counts, error, the first failing tests."""
        head = f"{self.passed} passed, {self.failed} failed" + (
            f" ({self.error})" if self.error else ""
        )
        lines = [head]
        for t in [t for t in self.tests if not t.passed][:max_failures]:
            where = f" at line {t.line}" if t.line is not None else ""
            lines.append(f"FAILED {t.name}: {t.exception}{where}: {t.message}".rstrip(": "))
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild from the worker's JSON form."""
        tests = [TestResult(**t) for t in data.get("tests", [])]
        return cls(
            passed=data["passed"],
            failed=data["failed"],
            tests=tests,
            error=data.get("error"),
            duration=data.get("duration", 0.0),
        )


# --------------------------------------------------------------------------------------------
# Child side: test planning and execution (runs in the forked child, inside the limits).
# --------------------------------------------------------------------------------------------


@dataclass
class _Step:
    """One executable piece of the tests: setup (``name`` None) or a test."""

    code: CodeType
    name: str | None
    source: str
    call: str | None = None
    """For pytest-style tests: the function to call after ``code`` defined it."""


def _contains_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _trivial_assert(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Constant)
        and bool(node.test.value)
    )


def _compile(nodes: list[ast.stmt]) -> CodeType:
    return compile(ast.Module(body=nodes, type_ignores=[]), TESTS_FILE, "exec")


def _source(text: str, node: ast.stmt) -> str:
    return (ast.get_source_segment(text, node) or ast.unparse(node)).strip()


def _is_check_call(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "check"
    )


def _plan_string(text: str, index: int | None) -> tuple[list[_Step], str | None, str | None]:
    """Steps of one test string, plus (candidate parameter, candidate name) for HumanEval style."""
    tree = ast.parse(text, TESTS_FILE)
    check = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None
    )
    steps: list[_Step] = []
    if check is not None:
        calls = [n for n in tree.body if _is_check_call(n)]
        target = None
        if calls and calls[0].value.args and isinstance(calls[0].value.args[0], ast.Name):
            target = calls[0].value.args[0].id
        setup = [n for n in tree.body if n is not check and not _is_check_call(n)]
        if setup:
            steps.append(_Step(_compile(setup), None, "<module setup>"))
        param = check.args.args[0].arg if check.args.args else "candidate"
        for stmt in check.body:
            if isinstance(stmt, ast.Return):
                break
            if _trivial_assert(stmt):
                continue
            name = f"check:L{stmt.lineno}" if _contains_assert(stmt) else None
            steps.append(_Step(_compile([stmt]), name, _source(text, stmt)))
        return steps, param, target
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    if tests:
        steps.append(_Step(_compile(tree.body), None, "<module setup>"))
        steps.extend(_Step(_compile([]), t.name, t.name, call=t.name) for t in tests)
        return steps, None, None
    if index is not None:
        return [_Step(_compile(tree.body), f"test_{index}", text.strip())], None, None
    for stmt in tree.body:
        if _trivial_assert(stmt):
            continue
        name = f"test:L{stmt.lineno}" if _contains_assert(stmt) else None
        steps.append(_Step(_compile([stmt]), name, _source(text, stmt)))
    return steps, None, None


def plan_tests(tests: str | Sequence[str]) -> tuple[list[_Step], str | None, str | None]:
    """Split tests into setup and test steps (see the module docstring); names are unique."""
    if isinstance(tests, str):
        steps, param, target = _plan_string(tests, None)
    else:
        steps, param, target = [], None, None
        for i, text in enumerate(tests):
            more, p, t = _plan_string(text, i)
            steps.extend(more)
            param, target = param or p, target or t
    seen: collections.Counter[str] = collections.Counter()
    for step in steps:
        if step.name is not None:
            seen[step.name] += 1
            if seen[step.name] > 1:
                step.name = f"{step.name}#{seen[step.name]}"
    return steps, param, target


def _program_line(tb: Any) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException, step_source: str) -> dict[str, Any]:
    message = str(exc) or (step_source if isinstance(exc, AssertionError) else "")
    return {
        "exception": type(exc).__name__,
        "line": _program_line(exc.__traceback__),
        "message": message[:_MESSAGE_CHARS],
    }


def execute(
    job: dict[str, Any], emit: Callable[[dict[str, Any]], None], violations: list[str]
) -> None:
    """Run one job's program and tests in this process, emitting one record per event."""
    try:
        steps, param, target = plan_tests(job["tests"])
    except SyntaxError as exc:
        emit({"t": "tests_error", "message": f"{type(exc).__name__}: {exc}"[:_MESSAGE_CHARS]})
        return
    names = [s.name for s in steps if s.name is not None]
    emit({"t": "plan", "names": names})
    ns: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        exec(compile(job["program"], PROGRAM_FILE, "exec"), ns)  # noqa: S102 - the sandbox's job
    except BaseException as exc:  # noqa: BLE001 - the program's own failure is the result
        record = _describe(exc, "")
        if isinstance(exc, SyntaxError):
            record["line"] = exc.lineno
        emit({"t": "load", "syntax": isinstance(exc, SyntaxError), **record})
        return
    entry = target or job.get("entry_point")
    if param is not None:
        ns[param] = ns.get(entry) if entry else None
    index = 0
    setup_error: dict[str, Any] | None = None
    for step in steps:
        before = len(violations)
        record: dict[str, Any] | None = None
        if setup_error is not None and step.name is not None:
            record = {**setup_error, "message": f"setup failed: {setup_error['message']}"}
        else:
            try:
                exec(step.code, ns)  # noqa: S102 - the sandbox's job
                if step.call is not None:
                    ns[step.call]()
            except MemoryError as exc:
                record = _describe(exc, step.source)
                emit({"t": "memory"})
            except BaseException as exc:  # noqa: BLE001 - tests may raise anything
                record = _describe(exc, step.source)
        if len(violations) > before:
            record = {"exception": "SandboxViolation", "line": None, "message": violations[-1]}
        if step.name is None:
            if record is not None and setup_error is None:
                setup_error = record
            continue
        emit({"t": "result", "i": index, "passed": record is None, **(record or {})})
        index += 1
    emit({"t": "end"})


def _install_guard(root: str, violations: list[str]) -> None:
    """Audit hook: block writes outside ``root``, processes, network, ctypes (see docstring)."""
    root = os.path.realpath(root)
    prefix = root + os.sep
    realpath, join, fsdecode, getcwd = os.path.realpath, os.path.join, os.fsdecode, os.getcwd
    busy = [False]

    def outside(path: Any) -> bool:
        if isinstance(path, int) or path is None:
            return False
        text = fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
        if text == os.devnull:
            return False
        full = realpath(join(getcwd(), text))
        return full != root and not full.startswith(prefix)

    def block(what: str) -> None:
        violations.append(what[:_MESSAGE_CHARS])
        raise SandboxViolation(f"sandbox: {what}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0]:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & _WRITE_FLAGS
            )
            if not writing:
                return
            busy[0] = True
            try:
                bad = outside(path)
            finally:
                busy[0] = False
            if bad:
                block(f"write outside the sandbox: {path!r}")
        elif event in _PATH_EVENTS:
            busy[0] = True
            try:
                bad = [args[i] for i in _PATH_EVENTS[event] if i < len(args) and outside(args[i])]
            finally:
                busy[0] = False
            if bad:
                block(f"{event} outside the sandbox: {bad[0]!r}")
        elif event in _BLOCKED_EVENTS:
            block(f"{event} is not allowed")
        elif event == "import" and args[0].partition(".")[0] in _BLOCKED_MODULES:
            block(f"import of {args[0]} is not allowed")

    sys.addaudithook(hook)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _child(job: dict[str, Any], tmp: str, wfd: int) -> None:
    """In the forked child: isolate, limit, guard, run the job, stream records to ``wfd``."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if wfd != _RESULT_FD:
        os.dup2(wfd, _RESULT_FD)
    os.closerange(_RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.chdir(tmp)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"})
    tempfile.tempdir = tmp
    sys.dont_write_bytecode = True
    lim = job["limits"]
    mem = lim["memory_mb"] << 20
    fsize = lim["file_size_mb"] << 20
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_seconds"], lim["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"], lim["max_processes"]))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    for name in _BLOCKED_MODULES:
        sys.modules.pop(name, None)
    violations: list[str] = []
    _install_guard(tmp, violations)

    def emit(record: dict[str, Any]) -> None:
        _write_all(_RESULT_FD, (json.dumps(record) + "\n").encode())

    execute(job, emit, violations)


def _parse_stream(data: bytes) -> list[dict[str, Any]]:
    records = []
    for raw in data.split(b"\n"):
        try:
            records.append(json.loads(raw))
        except ValueError:
            continue
    return records


_MISSING_EXCEPTION = {"timeout": "Timeout", "memory": "MemoryError", "file-size": "FileSizeExceeded",
                      None: "Exited"}  # fmt: skip


def _assemble(records: list[dict[str, Any]], reason: str | None, duration: float) -> dict[str, Any]:
    """Turn the child's records and the way it ended into a RunResult dict."""
    names: list[str] = []
    results: dict[int, dict[str, Any]] = {}
    load = None
    ended = memory = False
    tests_error = None
    for rec in records:
        kind = rec.get("t")
        if kind == "plan":
            names = rec["names"]
        elif kind == "result":
            results[rec["i"]] = rec
        elif kind == "load":
            load = rec
        elif kind == "memory":
            memory = True
        elif kind == "end":
            ended = True
        elif kind == "tests_error":
            tests_error = rec["message"]
    tests: list[TestResult] = []
    first_missing = True
    for i, name in enumerate(names):
        if i in results:
            r = results[i]
            tests.append(
                TestResult(
                    name, r["passed"], r.get("exception"), r.get("line"), r.get("message", "")
                )
            )
        elif load is not None:
            tests.append(TestResult(name, False, load["exception"], load["line"], load["message"]))
        else:
            exc = _MISSING_EXCEPTION.get(reason, "Killed")
            msg = f"{reason or 'exit'}" if first_missing else f"not run ({reason or 'exit'})"
            tests.append(TestResult(name, False, exc if first_missing else None, None, msg))
            first_missing = False
    error = reason
    if error is None:
        if tests_error is not None:
            error = "tests"
        elif memory:
            error = "memory"
        elif load is not None:
            error = "syntax" if load["syntax"] else "load"
        elif any(t.exception == "SandboxViolation" for t in tests):
            error = "blocked"
        elif not ended:
            error = "exit"
    passed = sum(t.passed for t in tests)
    return {
        "passed": passed,
        "failed": len(tests) - passed,
        "tests": [dataclasses.asdict(t) for t in tests],
        "error": error,
        "duration": duration,
    }


def _reap_namespace() -> None:
    """As PID 1 of our own PID namespace: kill every other process in it and reap them."""
    if os.getpid() != 1:
        return
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_job(job: dict[str, Any], base: str) -> dict[str, Any]:
    """Fork a child that runs ``job`` under the limits; return the RunResult dict."""
    lim = job["limits"]
    tmp = tempfile.mkdtemp(prefix="run-", dir=base)
    start = time.monotonic()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            _child(job, tmp, wfd)
        finally:
            os._exit(0)
    os.close(wfd)
    deadline = start + lim["wall_timeout"]
    chunks: list[bytes] = []
    size = 0
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([rfd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(rfd, 1 << 16)
        if not chunk:
            break
        if size < _MAX_STREAM_BYTES:
            chunks.append(chunk)
            size += len(chunk)
    os.close(rfd)
    while not timed_out:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        timed_out = time.monotonic() >= deadline
        time.sleep(0.0005)
    if timed_out:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        _, status, usage = os.wait4(pid, 0)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _reap_namespace()
    duration = time.monotonic() - start
    shutil.rmtree(tmp, ignore_errors=True)
    records = _parse_stream(b"".join(chunks))
    reason = None
    if timed_out:
        reason = "timeout"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= lim["cpu_seconds"] - 0.05):
            reason = "timeout"
        elif sig == signal.SIGXFSZ:
            reason = "file-size"
        elif any(r.get("t") == "memory" for r in records) or (
            usage.ru_maxrss * 1024 >= 0.9 * (lim["memory_mb"] << 20)
        ):
            reason = "memory"
        else:
            reason = "killed"
    return _assemble(records, reason, duration)


def _worker_main(base: str) -> None:
    """Worker loop: one JSON job per stdin line, one JSON result per stdout line."""
    for name in _PRELOAD:
        __import__(name)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = run_job(json.loads(line), base)
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            result = {
                "passed": 0, "failed": 0, "tests": [], "duration": 0.0,
                "error": "sandbox", "detail": f"{type(exc).__name__}: {exc}",
            }  # fmt: skip
        out.write(json.dumps(result) + "\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# Parent side: isolation detection, worker pool, Docker backend, cache.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Isolation:
    """What containment the subprocess backend's workers get on this machine."""

    prefix: tuple[str, ...]
    """Command prefix the worker is started under."""
    network: bool
    """Empty network namespace."""
    pid_namespace: bool
    """Worker is PID 1 of its own PID namespace (everything spawned is killed after each run)."""
    user: str
    """``nobody`` (root dropped privileges), ``userns`` (user namespace) or ``self``."""
    audit_hook: bool = True
    """The in-process audit hook (always on)."""


_UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child")
_SETPRIV = (
    "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
    "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
    "--bounding-set=-all,+dac_read_search", "--no-new-privs",
)  # fmt: skip


def _probe(prefix: Sequence[str], expect_pid1: bool) -> bool:
    import subprocess  # parent-only: the worker must not load it

    code = f"import os,sys; sys.exit(0 if (os.getpid() == 1) == {expect_pid1!r} else 3)"
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def detect_isolation(network: bool = True) -> Isolation:
    """Probe once which namespaces and privilege drop work here; fall back silently."""
    candidates: list[Isolation] = []
    if network and shutil.which("unshare"):
        if os.geteuid() == 0:
            if shutil.which("setpriv"):
                candidates.append(Isolation(_UNSHARE + _SETPRIV, True, True, "nobody"))
            candidates.append(Isolation(_UNSHARE, True, True, "self"))
        else:
            userns = ("unshare", "--user", "--map-root-user", *_UNSHARE[1:])
            candidates.append(Isolation(userns, True, True, "userns"))
            candidates.append(Isolation(("unshare", "--user", "--map-root-user", "--net"),
                                        True, False, "userns"))  # fmt: skip
    for iso in candidates:
        if _probe(iso.prefix, iso.pid_namespace):
            log.debug("sandbox isolation: %s", iso)
            return iso
    log.debug("sandbox isolation: no namespaces")
    return Isolation((), False, False, "self")


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers ``docker info``."""
    import subprocess  # parent-only: the worker must not load it

    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``docker`` when the engine answers, else ``subprocess``."""
    if backend == "auto":
        return "docker" if docker_available() else "subprocess"
    if backend not in ("subprocess", "docker"):
        raise ValueError(f"unknown sandbox backend: {backend!r}")
    return backend


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _error_result(reason: str) -> dict[str, Any]:
    return {"passed": 0, "failed": 0, "tests": [], "error": reason, "duration": 0.0}


class _Worker:
    """Parent-side handle of one pre-forked worker process."""

    def __init__(self, iso: Isolation, base: str, wall_timeout: float) -> None:
        self._cmd = [*iso.prefix, sys.executable, "-I", str(Path(__file__).resolve()), "--worker",
                     base]  # fmt: skip
        self._base = base
        self._grace = wall_timeout + 30.0
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        import subprocess  # parent-only: the worker must not load it

        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                self._cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self._base,
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
        return _error_result("sandbox")

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


class _DockerRunner:
    """Runs one job per ``docker run`` container (network none, memory and pid limits)."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self._cfg = cfg

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        import subprocess  # parent-only: the worker must not load it

        cfg = self._cfg
        script = str(Path(__file__).resolve())
        cmd = [
            "docker", "run", "--rm", "-i", "--network", "none",
            "--memory", f"{cfg.memory_mb}m", "--memory-swap", f"{cfg.memory_mb}m",
            "--pids-limit", str(cfg.max_processes), "--cpus", "1", "--read-only",
            "--tmpfs", "/sandbox:rw,exec,size=64m", "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
            "--security-opt", "no-new-privileges", "-v", f"{script}:/trustfix_sandbox.py:ro",
            cfg.docker_image, "python", "-I", "/trustfix_sandbox.py", "--once", "/sandbox",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd,
                input=(json.dumps(job) + "\n").encode(),
                capture_output=True,
                timeout=cfg.wall_timeout + 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return _error_result("timeout")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else _error_result("sandbox")

    def close(self) -> None:
        """Nothing persistent to stop."""


Job = tuple[str, "str | Sequence[str]", "str | None"]


class Sandbox:
    """Runs programs' tests in isolation, in parallel, with an LRU result cache."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.backend = resolve_backend(self.cfg.backend)
        self.isolation = (
            detect_isolation(self.cfg.network_isolation)
            if self.backend == "subprocess"
            else Isolation(("docker",), True, True, "nobody")
        )
        self.executions = 0
        """Programs actually executed (cache misses)."""
        self.cache_hits = 0
        self._cache: collections.OrderedDict[str, RunResult] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._base: str | None = None
        self._runners: queue.SimpleQueue[_Worker | _DockerRunner] = queue.SimpleQueue()
        self._all: list[_Worker | _DockerRunner] = []
        self._pool: ThreadPoolExecutor | None = None

    def _ensure_started(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                n = max(1, self.cfg.workers)
                if self.backend == "docker":
                    runners: list[_Worker | _DockerRunner] = [_DockerRunner(self.cfg)] * n
                else:
                    self._base = tempfile.mkdtemp(
                        prefix="trustfix-sandbox-", dir=self.cfg.temp_dir_root()
                    )
                    os.chmod(self._base, 0o711)
                    if self.isolation.user == "nobody":
                        os.chown(self._base, SANDBOX_UID, SANDBOX_UID)
                    runners = [
                        _Worker(self.isolation, self._base, self.cfg.wall_timeout) for _ in range(n)
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


def _main(argv: list[str]) -> None:
    """Script entry: ``--worker BASE`` (pool worker) or ``--once BASE`` (one job, Docker)."""
    mode, base = argv[0], argv[1]
    if mode == "--worker":
        _worker_main(base)
    elif mode == "--once":
        result = run_job(json.loads(sys.stdin.readline()), base)
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        raise SystemExit(f"usage: {Path(__file__).name} --worker|--once BASE")


if __name__ == "__main__":
    _main(sys.argv[1:])
