"""The candidate budget: which of the proposers' candidates fill a unit's ``cap`` slots.

Candidates are grouped by (proposer, family) and taken round-robin across the groups, so no
proposer or family crowds out another: first those on lines of a failing test's trace, then
those near the cursor, then the rest; inside a group, lower ranks (a family's first choice at
a site) first, then source order.  While taking by locality a group gets at most
``family_share`` of the slots and a proposer at most ``proposer_share``; slots still free
afterwards go to what is left, round-robin again.  Candidates that ``accept`` refuses (e.g.
they do not parse) are skipped and cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Budgeted(Protocol):
    """What the budget reads of a candidate."""

    @property
    def proposer(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def rank(self) -> int: ...


T = TypeVar("T", bound=Budgeted)


@dataclass(frozen=True)
class CandidateBudget:
    """How :func:`allocate` shares a unit's candidate slots."""

    proposer_share: float = 0.6
    """Most of the slots one proposer may take while others still have candidates (0-1]."""
    family_share: float = 0.15
    """Most of the slots one (proposer, family) group may take while others still have
    candidates (0-1]; with 48 slots, 7 per repair family."""
    near_cursor_lines: int = 3
    """Lines either side of the cursor that count as near it."""

    def __post_init__(self) -> None:
        if not (0 < self.proposer_share <= 1 and 0 < self.family_share <= 1):
            raise ValueError("proposer_share and family_share must be in (0, 1]")
        if self.near_cursor_lines < 0:
            raise ValueError("near_cursor_lines must be >= 0")


DEFAULT_BUDGET = CandidateBudget()


def locality(line: int, failing_lines: Collection[int], cursor_line: int | None, near: int) -> int:
    """0 for a line in a failing test's trace, 1 near the cursor, 2 for the rest."""
    if line in failing_lines:
        return 0
    if cursor_line is not None and abs(line - cursor_line) <= near:
        return 1
    return 2


def allocate(
    candidates: Sequence[T],
    cap: int,
    budget: CandidateBudget = DEFAULT_BUDGET,
    failing_lines: Collection[int] = (),
    cursor_line: int | None = None,
    accept: Callable[[T], bool] = lambda _: True,
) -> list[T]:
    """At most ``cap`` of ``candidates`` in the order they were taken (see the module doc)."""
    tier = {
        id(c): locality(c.line, failing_lines, cursor_line, budget.near_cursor_lines)
        for c in candidates
    }
    groups: dict[tuple[str, str], list[tuple[int, T]]] = {}
    for index, c in enumerate(candidates):
        groups.setdefault((c.proposer, c.family), []).append((index, c))
    queues = [
        sorted(members, key=lambda ic: (tier[id(ic[1])], ic[1].rank, ic[0]))
        for members in groups.values()
    ]
    heads = [0] * len(queues)
    per_proposer: dict[str, int] = {}
    per_group = [0] * len(queues)
    proposer_quota = max(1, math.ceil(budget.proposer_share * cap))
    group_quota = max(1, math.ceil(budget.family_share * cap))
    taken: list[T] = []

    def sweep(max_tier: int, quotas: bool) -> bool:
        progress = False
        for g, queue in enumerate(queues):
            while heads[g] < len(queue) and len(taken) < cap:
                c = queue[heads[g]][1]
                if tier[id(c)] > max_tier:
                    break
                if quotas and (
                    per_group[g] >= group_quota or per_proposer.get(c.proposer, 0) >= proposer_quota
                ):
                    break
                heads[g] += 1
                if accept(c):
                    taken.append(c)
                    per_group[g] += 1
                    per_proposer[c.proposer] = per_proposer.get(c.proposer, 0) + 1
                    progress = True
                    break
        return progress

    for max_tier in (0, 1, 2):
        while len(taken) < cap and sweep(max_tier, quotas=True):
            pass
    while len(taken) < cap and sweep(2, quotas=False):
        pass
    return taken
