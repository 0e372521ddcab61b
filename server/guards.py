"""Bounds on the language server's per-document work, so hostile documents cost little.

:func:`analyse_bounded` is what the server runs for a unit instead of calling
:func:`.session.analyse` directly: a function nested deeper than ``max_unit_depth`` or with more
than ``max_unit_nodes`` syntax nodes (5,000 nested brackets, a 50,000-term expression) gets no
refinements without being analysed, and a RecursionError that still escapes the operators or
proposers means "no refinements" for that unit, logged as one line.  :class:`AnalysisLanes`
gives documents of ``large_document_chars`` or more their own analysis thread, so a ranking of a
990 KB file never queues ahead of a code action on a small one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

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
        return analyse(source, unit, filename, semgrep, settings.max_candidates)
    except RecursionError:
        log.warning(
            "%s in %s not analysed: too deeply nested for the operators", unit.qualname, filename
        )
        return NOTHING


class AnalysisLanes:
    """Two analysis threads: one for documents under ``large_document_chars``, one for larger
    ones."""

    def __init__(self) -> None:
        self.small = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-analysis")
        self.large = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-large")

    def lane(self, source: str, settings: ServerSettings) -> ThreadPoolExecutor:
        """The thread that analyses ``source``."""
        return self.large if len(source) >= settings.large_document_chars else self.small

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop both threads."""
        for executor in (self.small, self.large):
            executor.shutdown(wait=wait, cancel_futures=cancel_futures)
