"""Execution evidence after an accepted change: the workspace's tests, run off the event loop.

With a ``testCommand`` the command runs in the workspace folder as given (its exit status is the
outcome).  Otherwise pytest runs on the workspace's test files that import the changed module,
in a temporary folder holding the editor's current text of the module (unsaved edits included)
and copies of those test files, with the workspace on ``PYTHONPATH``; counts come from pytest's
JUnit XML report.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

_SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", "build", "dist"}
MAX_TEST_FILES = 50
"""Test files run at most per accepted change."""


@dataclass(frozen=True)
class TestOutcome:
    """What one test run said."""

    __test__ = False

    command: str
    passed: int
    failed: int
    exit_code: int
    summary: str

    @property
    def r_env(self) -> float:
        """The environment's reward: the share of tests that passed (0 when none ran)."""
        total = self.passed + self.failed
        return self.passed / total if total else 0.0


def test_files_importing(root: Path, module: str, limit: int = MAX_TEST_FILES) -> list[Path]:
    """Test files (``test_*.py``, ``*_test.py``) under ``root`` that import ``module``."""
    pattern = re.compile(
        rf"^\s*(from\s+(\S+\.)?{re.escape(module)}\s+import|import\s+(\S+\.)?{re.escape(module)}\b)",
        re.MULTILINE,
    )
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP and not d.startswith(".")]
        for name in filenames:
            if not (name.startswith("test_") or name.endswith("_test.py")) or not name.endswith(
                ".py"
            ):
                continue
            path = Path(dirpath) / name
            try:
                if pattern.search(path.read_text(errors="replace")):
                    found.append(path)
            except OSError:
                continue
            if len(found) >= limit:
                return found
    return found


def run_command(command: str, root: Path, timeout: float) -> TestOutcome:
    """Run the configured ``testCommand`` in ``root``; passed/failed count the command itself."""
    try:
        proc = subprocess.run(
            shlex.split(command),
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return TestOutcome(command, 0, 1, -1, f"timed out after {timeout:.0f} s")
    except OSError as error:
        return TestOutcome(command, 0, 1, -1, f"could not start: {error}")
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    ok = proc.returncode == 0
    return TestOutcome(command, int(ok), int(not ok), proc.returncode, tail[0][:500])


def run_pytest(
    root: Path, module_path: Path, text: str, tests: list[Path], timeout: float
) -> TestOutcome:
    """pytest on copies of ``tests`` beside ``text`` saved as ``module_path``'s name."""
    with tempfile.TemporaryDirectory(prefix="trustfix-tests-") as tmp:
        work = Path(tmp)
        (work / module_path.name).write_text(text)
        copies = []
        for i, test in enumerate(tests):
            target = (
                work / f"{test.stem}_{i}.py" if (work / test.name).exists() else work / test.name
            )
            shutil.copyfile(test, target)
            copies.append(target.name)
        report = work / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *copies,
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(root)])}
        shown = "pytest " + " ".join(str(t.relative_to(root)) for t in tests)
        try:
            proc = subprocess.run(
                command,
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return TestOutcome(shown, 0, 1, -1, f"timed out after {timeout:.0f} s")
        passed = failed = 0
        if report.exists():
            for suite in ET.parse(report).getroot().iter("testsuite"):
                total = int(suite.get("tests", 0))
                bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                failed += bad
                passed += total - bad - int(suite.get("skipped", 0))
        lines = proc.stdout.strip().splitlines()
        return TestOutcome(
            shown, passed, failed, proc.returncode, (lines[-1] if lines else "")[:500]
        )
