"""Bounds on the language server's per-document work, so hostile documents cost little.

:func:`analyse_bounded` is what the server runs for a unit instead of calling
:func:`.session.analyse` directly: a function nested deeper than ``max_unit_depth`` or with more
than ``max_unit_nodes`` syntax nodes (5,000 nested brackets, a 50,000-term expression) gets no
refinements without being analysed, and a RecursionError that still escapes the operators or
proposers means "no refinements" for that unit, logged as one line.  :class:`AnalysisLanes`
gives documents of ``large_document_chars`` or more their own analysis thread, whose jobs wait
while small documents' analyses are queued or running: a large file's diagnostics pass never
queues ahead of a code action on a small one, and yields the interpreter to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .session import analyse
from .units import Unit, parse

if TYPE_CHECKING:
    from .findings import Finding, SemgrepCache
    from .proposers import Candidate
    from .settings import ServerSettings

log = logging.getLogger(__name__)

Analysis = tuple[tuple["Finding", ...], tuple["Candidate", ...], str]
"""What :func:`.session.analyse` returns: findings, candidates, the policy's state text."""
NOTHING: Analysis = ((), (), "")
"""The analysis of a unit that gets no refinements."""


def oversize(unit: Unit, max_depth: int, max_nodes: int) -> str | None:
    """Why ``unit``'s syntax tree is too deep or too large to analyse, or None.

    A cursor walk that stops at the first bound crossed (never recursion, never past
    ``max_nodes`` nodes)."""
    cursor = parse(unit.source).walk()
    depth = nodes = 0
    while True:
        nodes += 1
        if nodes > max_nodes:
            return f"more than {max_nodes} syntax nodes"
        if cursor.goto_first_child():
            depth += 1
            if depth > max_depth:
                return f"nested deeper than {max_depth}"
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return None
            depth -= 1


def analyse_bounded(
    settings: ServerSettings,
    source: str,
    unit: Unit,
    filename: str,
    semgrep: SemgrepCache | None,
) -> Analysis:
    """:func:`.session.analyse` of ``unit`` within the settings' bounds (:data:`NOTHING` past
    them or on a RecursionError)."""
    reason = oversize(unit, settings.max_unit_depth, settings.max_unit_nodes)
    if reason is not None:
        log.info("%s in %s not analysed: %s", unit.qualname, filename, reason)
        return NOTHING
    try:
        return analyse(
            source,
            unit,
            filename,
            semgrep,
            settings.max_candidates,
            budget=settings.candidate_budget,
        )
    except RecursionError:
        log.warning(
            "%s in %s not analysed: too deeply nested for the operators", unit.qualname, filename
        )
        return NOTHING


class _SmallLane(ThreadPoolExecutor):
    """The small documents' analysis thread; counts the jobs it has queued or running."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="trustfix-analysis")
        self.busy = 0
        self.idle = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn``; the count drops when it has run."""
        with self.idle:
            self.busy += 1
        return super().submit(self._counted, fn, *args, **kwargs)

    def _counted(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()


class _LargeLane(ThreadPoolExecutor):
    """The large documents' analysis thread: each job starts once the small lane is idle (or
    after ``wait_s``), so small documents get the interpreter first."""

    def __init__(self, small: _SmallLane, wait_s: float) -> None:
        super().__init__(max_workers=1, thread_name_prefix="trustfix-large")
        self.small = small
        self.wait_s = wait_s

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn`` behind the small lane's work."""
        return super().submit(self._after_small, fn, *args, **kwargs)

    def _after_small(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.small.idle:
            self.small.idle.wait_for(lambda: self.small.busy == 0, timeout=self.wait_s)
        return fn(*args, **kwargs)


class AnalysisLanes:
    """Two analysis threads: one for documents under ``large_document_chars``, one for larger
    ones, whose jobs give way to the small lane's for up to ``large_wait_s`` each."""

    def __init__(self, large_wait_s: float) -> None:
        self.small = _SmallLane()
        self.large = _LargeLane(self.small, large_wait_s)

    def lane(self, source: str, settings: ServerSettings) -> ThreadPoolExecutor:
        """The thread that analyses ``source``."""
        return self.large if len(source) >= settings.large_document_chars else self.small

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop both threads."""
        for executor in (self.small, self.large):
            executor.shutdown(wait=wait, cancel_futures=cancel_futures)
