"""Verified suggestions: the workspace's tests run against a unit's top candidates, in the sandbox.

When test files in the workspace import the edited module (the discovery execution evidence
uses, :func:`~trustfix.server.evidence.test_files_importing`), their ``test_*`` functions run
in :class:`~trustfix.server.sandbox.Sandbox` against the document's current text (the baseline)
and against the ``verify_candidates`` candidates that would be offered first, until
``verify_budget_s`` has passed.  The imports of the module are rewritten to names from the
program under test, so a test file runs against the candidate's text without the workspace
(``from calc import add`` -> ``add``; ``import calc`` -> a namespace of the program's globals);
HumanEval-style tests (``check(candidate)``) get the unit's function as the candidate.
A user's tests never run outside the sandbox for this; a configured ``testCommand`` (a shell
command) is therefore not used here, and test files that cannot run in the sandbox's namespace
(``import pytest`` loads subprocess machinery the sandbox forbids; fixtures) verify nothing.

Each candidate gets a :class:`Verdict`: how many tests pass, which failing ones it fixes and
which passing ones it breaks.  Verification runs in its own thread and never delays a request:
the server uses the verdicts known when a request comes and refreshes the client's hints when
more arrive.
"""

from __future__ import annotations

import ast
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evidence import test_files_importing
from .findings import content_hash
from .session import Ranking

log = logging.getLogger(__name__)

VERDICT_CACHE = 1024
"""Verdicts kept (by document text, candidate text and tests)."""


@dataclass(frozen=True)
class Verdict:
    """The workspace's tests on one candidate, against the document's current text."""

    passed: int
    failed: int
    fixed: int
    """Tests that fail on the current text and pass with the candidate."""
    broke: int
    """Tests that pass on the current text and fail with the candidate."""
    error: str | None
    """The sandbox's reason when the run as a whole failed (see :class:`RunResult`)."""
    command: str
    """What ran: ``sandbox: <test files>``."""
    summary: str

    @property
    def label(self) -> str:
        """For the action's title: ``✓ 12/12 tests`` or ``✗ 3/12 tests``."""
        total = self.passed + self.failed
        mark = "✓" if self.failed == 0 and self.error is None and total else "✗"
        return f"{mark} {self.passed}/{total} tests"

    @property
    def improves(self) -> bool:
        """It makes failing tests pass and breaks none."""
        return self.fixed > 0 and self.broke == 0 and self.error is None

    @property
    def breaks(self) -> bool:
        """It makes passing tests fail (such a candidate is not offered)."""
        return self.broke > 0

    @property
    def r_env(self) -> float:
        """The environment's reward: the share of tests that pass (0 when none ran)."""
        total = self.passed + self.failed
        return self.passed / total if total else 0.0


def adapt_test(text: str, module: str) -> str | None:
    """``text`` (a test file) with its imports of ``module`` bound to the program's own names,
    so it runs in the program's namespace; None when it does not parse."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and (node.module == module or node.module.endswith("." + module))
        ):
            bound = [f"{a.asname} = {a.name}\n" for a in node.names if a.asname and a.name != "*"]
            edits.append((node.lineno, node.end_lineno or node.lineno, "".join(bound) or "pass\n"))
        elif isinstance(node, ast.Import) and any(
            a.name == module or a.name.endswith("." + module) for a in node.names
        ):
            out = []
            for a in node.names:
                if a.name == module or a.name.endswith("." + module):
                    name = a.asname or a.name.split(".")[0]
                    out.append(f"{name} = __import__('types').SimpleNamespace(**globals())\n")
                else:
                    out.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else "") + "\n")
            edits.append((node.lineno, node.end_lineno or node.lineno, "".join(out)))
    for first, last, replacement in reversed(edits):
        lines[first - 1 : last] = [replacement]
    return "".join(lines)


def workspace_tests(root: Path, module_path: Path) -> list[tuple[str, str]]:
    """The workspace's test files that import ``module_path``'s module, adapted by
    :func:`adapt_test`: ``(path relative to root, text)``."""
    out = []
    for path in test_files_importing(root, module_path.stem):
        try:
            adapted = adapt_test(path.read_text(errors="replace"), module_path.stem)
        except OSError:
            continue
        if adapted is not None:
            out.append((str(path.relative_to(root)), adapted))
    return out


def verdict(baseline: Any, result: Any, command: str) -> Verdict:
    """A candidate's :class:`Verdict` from the sandbox's runs on the current text (``baseline``)
    and on the candidate (``result``), both :class:`~trustfix.server.sandbox.RunResult`."""
    before = {t.name: t.passed for t in baseline.tests}
    after = {t.name: t.passed for t in result.tests}
    fixed = sum(1 for name, ok in after.items() if ok and before.get(name) is False)
    broke = sum(1 for name, ok in before.items() if ok and not after.get(name, False))
    return Verdict(
        result.passed, result.failed, fixed, broke, result.error, command, result.summary()
    )


class Verifier:
    """Runs the workspace's tests against candidates in the sandbox, in its own thread.

    :meth:`known` answers at once from the cache; :meth:`submit` verifies a ranking's top
    candidates in the background (once per document text and unit) and calls ``on_done(uri)``
    (in the verifier's thread) when new verdicts are in."""

    def __init__(
        self, candidates: int, budget_s: float, on_done: Callable[[str], None] | None = None
    ) -> None:
        self.candidates, self.budget_s, self.on_done = candidates, budget_s, on_done
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-verify")
        self.closing = threading.Event()
        self.sandbox: Any = None
        self.verdicts: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        """(document hash, candidate hash) -> verdict."""
        self.submitted: OrderedDict[tuple[str, int], Future[int]] = OrderedDict()
        self.failing_lines: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        """Document hash -> program lines where tests fail on the current text."""

    def known(self, source: str, ranking: Ranking) -> dict[int, Verdict]:
        """The verdicts already known for ``ranking``'s candidates, by candidate index."""
        doc = content_hash(source)
        out = {}
        for i, candidate in enumerate(ranking.candidates):
            found = self.verdicts.get((doc, content_hash(candidate.source)))
            if found is not None:
                out[i] = found
        return out

    def submit(
        self, uri: str, root: Path, path: Path, source: str, ranking: Ranking, order: list[int]
    ) -> Future[int] | None:
        """Verify ``ranking``'s first candidates in ``order`` (the order they would be offered
        in) in the background, once per text and unit; the future gives how many verdicts were
        added."""
        key = (content_hash(source), ranking.unit.start_byte)
        if key in self.submitted or self.candidates <= 0 or not ranking.candidates:
            return self.submitted.get(key)
        future = self.thread.submit(self._verify, uri, root, path, source, ranking, order)
        self.submitted[key] = future
        while len(self.submitted) > VERDICT_CACHE:
            self.submitted.popitem(last=False)
        return future

    def close(self) -> None:
        """Stop the thread (after the sandbox run in progress) and the sandbox's workers."""
        self.closing.set()
        self.thread.shutdown(wait=True, cancel_futures=True)
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None

    def _verify(
        self, uri: str, root: Path, path: Path, source: str, ranking: Ranking, order: list[int]
    ) -> int:
        tests = workspace_tests(root, path)
        if not tests or self.closing.is_set():
            return 0
        if self.sandbox is None:
            from .sandbox import Sandbox, SandboxConfig

            self.sandbox = Sandbox(SandboxConfig(workers=1))
        started = time.monotonic()
        texts = [text for _, text in tests]
        command = "sandbox: " + " ".join(name for name, _ in tests)
        baseline = self.sandbox.run(source, texts, ranking.unit.name)
        if baseline.error is not None:  # the tests cannot run here (e.g. they import pytest)
            log.info("tests of %s not verifiable in the sandbox: %s", path.name, baseline.summary())
            return 0
        doc = content_hash(source)
        self.failing_lines[doc] = tuple(
            sorted({t.line for t in baseline.tests if not t.passed and t.line is not None})
        )
        while len(self.failing_lines) > VERDICT_CACHE:
            self.failing_lines.popitem(last=False)
        added = 0
        for index in order[: self.candidates]:
            if time.monotonic() - started > self.budget_s or self.closing.is_set():
                break
            candidate = ranking.candidates[index]
            key = (doc, content_hash(candidate.source))
            if key in self.verdicts:
                continue
            result = self.sandbox.run(candidate.source, texts, ranking.unit.name)
            self.verdicts[key] = verdict(baseline, result, command)
            added += 1
            while len(self.verdicts) > VERDICT_CACHE:
                self.verdicts.popitem(last=False)
        log.info(
            "verified %d candidate(s) of %s in %.2f s",
            added,
            ranking.unit.qualname,
            time.monotonic() - started,
        )
        if added and self.on_done is not None:
            self.on_done(uri)
        return added
