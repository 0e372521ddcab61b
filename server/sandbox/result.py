"""Result types of a sandbox run, and their assembly from the child's record stream.

``RunResult.error`` names what went wrong with the run as a whole: ``timeout`` (wall clock or
CPU), ``memory`` (a MemoryError or the address-space limit), ``file-size``, ``killed`` (another
signal), ``syntax`` (the program does not compile), ``load`` (it raises on import), ``blocked``
(a sandbox violation), ``exit`` (it exited before the tests finished), ``tests`` (the tests do
not parse), ``sandbox`` (the worker itself failed); ``None`` for a run whose tests merely fail.

Standard library only: the sandbox's child script imports this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


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


_MISSING_EXCEPTION = {
    "timeout": "Timeout",
    "memory": "MemoryError",
    "file-size": "FileSizeExceeded",
    None: "Exited",
}


def assemble(records: list[dict[str, Any]], reason: str | None, duration: float) -> dict[str, Any]:
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


def error_result(reason: str) -> dict[str, Any]:
    """The RunResult dict of a run that went wrong as a whole before any test ran."""
    return {"passed": 0, "failed": 0, "tests": [], "error": reason, "duration": 0.0}
