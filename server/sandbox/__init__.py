"""Sandboxed test execution: run a program's tests, return per-test pass/fail.

The parts: :mod:`.plan` splits tests into steps; :mod:`.child` is the stdlib-only worker script
that forks one child per program and runs the steps under limits and the audit hook of
:mod:`.guard` (a second layer); :mod:`.result` holds the result types; :mod:`.isolation` decides
what the workers are started under (bubblewrap); :mod:`.pool` keeps the pre-forked workers and
the result cache (:class:`Sandbox`); :mod:`.docker` is the container backend; :mod:`.config`
the settings.
"""

from .child import execute, run_job
from .config import ALLOW_WEAK_ENV, SandboxConfig
from .docker import docker_available, resolve_backend
from .guard import SandboxViolation
from .isolation import SANDBOX_UID, Isolation, SandboxUnavailable, detect_isolation, seccomp_filter
from .plan import PROGRAM_FILE, TESTS_FILE, plan_tests
from .pool import CHILD_SCRIPT, Job, Sandbox
from .result import RunResult, TestResult

__all__ = [
    "ALLOW_WEAK_ENV",
    "CHILD_SCRIPT",
    "PROGRAM_FILE",
    "SANDBOX_UID",
    "TESTS_FILE",
    "Isolation",
    "Job",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "SandboxViolation",
    "TestResult",
    "detect_isolation",
    "docker_available",
    "execute",
    "plan_tests",
    "resolve_backend",
    "run_job",
    "seccomp_filter",
]
