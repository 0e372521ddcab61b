"""The child side of the sandbox: a stdlib-only script that runs programs' tests.

Run as a script (``python -I child.py --worker BASE``) it is a pool worker: one JSON job per
stdin line, one JSON result per stdout line.  For each job it forks a fresh child that applies
the limits and runs the tests, so a program costs a fork, not a Python start-up
(``--once BASE`` runs a single job, for the Docker backend).

In the forked child: a new session (``setsid``), stdin/stdout/stderr on /dev/null, a fresh temp
dir as cwd, HOME and TMPDIR, a scrubbed environment, RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE,
RLIMIT_NPROC, no core files, and the audit hook of :mod:`.guard` (a second layer, not a
boundary).  The boundary is the isolation the worker is started under (:mod:`.isolation`).

Everything runs in one namespace: the program's globals, then the tests' module-level setup.
``TestResult.line`` is the program line of the innermost traceback frame inside the program
(``None`` when the exception never passed through program code, e.g. a wrong return value).
The worker kills the child's group at the wall timeout; RLIMIT_CPU stops busy loops sooner.
After every program a worker that is PID 1 of its own PID namespace SIGKILLs every other process
in it (``kill(-1)``), so nothing a program spawned survives it.

The containment protects the machine, not the verdict: code written to forge its own results
(by writing to the result pipe) is out of scope.

Standard library only (plus the siblings :mod:`.guard`, :mod:`.plan` and :mod:`.result`, also
stdlib-only).
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__:
    from .guard import BLOCKED_MODULES, MESSAGE_CHARS, install_guard
    from .plan import PROGRAM_FILE, plan_tests
    from .result import assemble
else:  # run as a script (the worker): the stdlib-only siblings from this file's folder
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from guard import BLOCKED_MODULES, MESSAGE_CHARS, install_guard  # type: ignore[no-redef]
    from plan import PROGRAM_FILE, plan_tests  # type: ignore[no-redef]
    from result import assemble  # type: ignore[no-redef]

    del sys.path[0]
    for _name in ("guard", "plan", "result"):  # not importable by those names from a program
        del sys.modules[_name]

# The worker never imports ``subprocess``: a module the worker has loaded is reachable from a
# sandboxed program without an import event (``subprocess._posixsubprocess.fork_exec``).
_MAX_STREAM_BYTES = 8 << 20
_RESULT_FD = 3
_PRELOAD = (
    "typing",
    "math",
    "re",
    "hashlib",
    "random",
    "itertools",
    "collections",
    "functools",
    "string",
    "heapq",
    "bisect",
    "fractions",
    "statistics",
    "copy",
    "operator",
    "decimal",
    "datetime",
    "json",
)


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
        "message": message[:MESSAGE_CHARS],
    }


def execute(
    job: dict[str, Any], emit: Callable[[dict[str, Any]], None], violations: list[str]
) -> None:
    """Run one job's program and tests in this process, emitting one record per event."""
    try:
        steps, param, target = plan_tests(job["tests"])
    except SyntaxError as exc:
        emit({"t": "tests_error", "message": f"{type(exc).__name__}: {exc}"[:MESSAGE_CHARS]})
        return
    names = [s.name for s in steps if s.name is not None]
    emit({"t": "plan", "names": names})
    ns: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        exec(compile(job["program"], PROGRAM_FILE, "exec"), ns)
    except BaseException as exc:
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
                exec(step.code, ns)
                if step.call is not None:
                    ns[step.call]()
            except MemoryError as exc:
                record = _describe(exc, step.source)
                emit({"t": "memory"})
            except BaseException as exc:
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
    for name in BLOCKED_MODULES:
        sys.modules.pop(name, None)
    violations: list[str] = []
    install_guard(tmp, violations)

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
    return assemble(records, reason, duration)


def _drop_privileges(uid: int) -> None:
    """Become ``uid`` (group the same, no supplementary groups); root's capabilities go with it."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"could not drop to uid {uid}")


def _unlock(top: str) -> None:
    """Give the owner rwx on every folder under ``top`` (a program may have locked one)."""
    try:
        os.chmod(top, 0o700)
    except OSError:
        return
    for root, dirs, _ in os.walk(top):
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
            except OSError:
                continue


def _wipe(folders: tuple[str, ...]) -> None:
    """Remove everything the worker can remove in ``folders`` (its private tmpfs, /dev/shm)."""
    for folder in folders:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                _unlock(path)
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    continue


def _capabilities() -> int:
    """The effective capability mask of this process (0 without /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _worker_main(base: str, wipe: bool) -> None:
    """Worker loop: one JSON job per stdin line, one JSON result per stdout line."""
    for name in _PRELOAD:
        __import__(name)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    scratch = (base, "/dev/shm") if wipe else ()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = run_job(json.loads(line), base)
        except Exception as exc:
            result = {
                "passed": 0,
                "failed": 0,
                "tests": [],
                "duration": 0.0,
                "error": "sandbox",
                "detail": f"{type(exc).__name__}: {exc}",
            }
        _wipe(scratch)
        out.write(json.dumps(result) + "\n")
        out.flush()


def _main(argv: list[str]) -> None:
    """Script entry: ``--worker BASE`` (pool worker), ``--once BASE`` (one job, Docker) or
    ``--probe`` (print what the sandbox looks like from inside), each optionally followed by
    ``--uid N`` (drop to that user first) and ``--wipe`` (empty BASE and /dev/shm after each
    program: the worker's private tmpfs)."""
    mode = argv[0]
    rest = argv[1:] if mode == "--probe" else argv[2:]
    if "--uid" in rest:
        _drop_privileges(int(rest[rest.index("--uid") + 1]))
    if mode == "--probe":
        facts = {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "caps": _capabilities(),
            "root": sorted(os.listdir("/")),
        }
        sys.stdout.write(json.dumps(facts) + "\n")
    elif mode == "--worker":
        _worker_main(argv[1], "--wipe" in rest)
    elif mode == "--once":
        result = run_job(json.loads(sys.stdin.readline()), argv[1])
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        raise SystemExit(f"usage: {Path(__file__).name} --worker|--once BASE [--uid N] [--wipe]")


if __name__ == "__main__":
    _main(sys.argv[1:])
