"""The offer lifecycle: every code action made to the reviewer, from offered to dropped.

An :class:`Offer` starts ``offered`` and reaches exactly one final state:

* ``accepted`` (the reviewer applied it): its edits are then tracked at the settings'
  ``edit_checkpoints`` and its inline ``# trustfix: ...`` comments picked up; it is finished once
  the last checkpoint has passed (or its document is closed by then);
* ``rejected`` (the reviewer said no);
* ``ignored`` (left unanswered for ``offer_expiry_s``: recorded as a weak ``ignore``);
* ``expired`` (superseded unanswered by a new order of the same unit's candidates, e.g. once
  tests verified some, or dropped unanswered to keep the book within ``max_offers``; nothing is
  recorded, since the reviewer may never have seen it).

A finished offer stays ``offer_keep_s`` for late ratings and comments, then is dropped; the book
never holds more than ``max_offers`` (the oldest go first).  Time comes from an injected clock
(:class:`ManualClock` in tests, ``time.monotonic`` otherwise), so the lifecycle is driven without
sleeping.  :meth:`OfferBook.tick` returns the feedback due; the server records it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .proposers import Candidate, unified_diff
from .session import Ranking, find_unit
from .settings import ServerSettings

COMMENT = re.compile(r"#\s*trustfix:\s*(.+?)\s*$")
"""An inline reviewer comment: ``# trustfix: <text>``."""
MAX_TEXT = 2000
"""Longest comment accepted (as :data:`trustfix.trainer.events.MAX_TEXT`, which is imported only
after ``initialize`` is answered: the ``trainer`` package loads torch)."""

Clock = Callable[[], float]
"""Seconds on a monotonic scale."""


class OfferStatus(StrEnum):
    """Where an offer is in its lifecycle (every state but ``offered`` is final)."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IGNORED = "ignored"
    EXPIRED = "expired"


class ManualClock:
    """A clock that moves only when told to (``trustfix serve --manual-clock``, for tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> float:
        """Move ``seconds`` forward (never back); the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.time += seconds
        return self.time


@dataclass
class Offer:
    """One code action made to the reviewer, and what happened to it since."""

    id: str
    uri: str
    source: str
    """The document text the offer was made against."""
    ranking: Ranking
    index: int
    request: tuple[Any, ...] = ()
    """The request (document, content, unit, policy, top-k) that produced it."""
    verdict: Any = None
    """The workspace's tests on it (:class:`~trustfix.server.verify.Verdict`), when verified
    before it was offered."""
    event: Any = None
    """The recorded Suggestion event (None when telemetry is off)."""
    created: float = 0.0
    status: OfferStatus = OfferStatus.OFFERED
    finished_at: float | None = None
    """When nothing was left to track (a final state reached, or an accept's last checkpoint)."""
    accepted_at: float = 0.0
    accepted_text: str = ""
    """The unit as trustfix rewrote it."""
    checkpoints_done: int = 0
    last_reported: str | None = None
    comments: dict[int, tuple[str, float]] = field(default_factory=dict)
    """Relative line -> (comment text, when it last changed)."""
    comments_sent: set[str] = field(default_factory=set)

    @property
    def candidate(self) -> Candidate:
        """The offered candidate."""
        return self.ranking.candidates[self.index]

    @property
    def title(self) -> str:
        """The candidate's title."""
        return self.candidate.title


@dataclass(frozen=True)
class Note:
    """Feedback about an offer that the book's bookkeeping found due (the server records it)."""

    offer: Offer
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


def survival(original: str, accepted: str, current: str) -> float:
    """Share of the lines the accepted change introduced that are still in ``current``."""
    before = set(original.splitlines())
    added = [line for line in accepted.splitlines() if line not in before]
    if not added:
        return 1.0 if current == accepted else 0.0
    now = set(current.splitlines())
    return sum(line in now for line in added) / len(added)


def correction(offer: Offer, current: str) -> str:
    """The reviewer's correction of an accepted change as a unified diff (accepted -> current)."""
    return unified_diff(offer.accepted_text, current, filename=f"{offer.ranking.unit.qualname}.py")


def inline_comments(unit_text: str, accepted_text: str) -> dict[int, str]:
    """``# trustfix: ...`` comments in ``unit_text`` not already in ``accepted_text``, by line."""
    present = set(accepted_text.splitlines())
    out = {}
    for i, line in enumerate(unit_text.splitlines()):
        match = COMMENT.search(line)
        if match and line not in present:
            out[i] = match.group(1)
    return out


class OfferBook:
    """The offers alive now, by suggestion id, and the open offers of each request (so a
    repeated request reuses its suggestion ids instead of recording new ones)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.by_id: dict[str, Offer] = {}
        """In the order they were made (the oldest first)."""
        self.by_request: dict[tuple[Any, ...], list[Offer]] = {}
        self.latest: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Offer]]] = {}
        """Request without its order -> the newest request for it and its offers."""
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.by_id)

    def now(self) -> float:
        """The book's clock."""
        return self.clock()

    def get(self, suggestion_id: str) -> Offer | None:
        """The offer with this id, or None (never made, or dropped)."""
        return self.by_id.get(suggestion_id)

    def open_offers(self, key: tuple[Any, ...]) -> list[Offer] | None:
        """The offers of request ``key`` (its last item the order offered) when all are still
        open, else None.  The open offers of an earlier order of the same unit are superseded:
        they expire."""
        earlier = self.latest.get(key[:-1])
        if earlier is not None and earlier[0] != key:
            with self.lock:
                for offer in earlier[1]:
                    if offer.status is OfferStatus.OFFERED:
                        self._finish(offer, OfferStatus.EXPIRED, self.now())
        return self.by_request.get(key)

    def add(self, key: tuple[Any, ...], offers: list[Offer], max_offers: int) -> list[Offer]:
        """Remember the offers of one request (stamped with the clock); beyond ``max_offers``
        the oldest are dropped, the unanswered ones as ``expired``.  Returns those dropped."""
        now = self.now()
        with self.lock:
            for offer in offers:
                offer.request, offer.created = key, now
                self.by_id[offer.id] = offer
            self.by_request[key] = offers
            self.latest[key[:-1]] = (key, offers)
            dropped = []
            while len(self.by_id) > max_offers:
                oldest = self.by_id[next(iter(self.by_id))]
                if oldest.status is OfferStatus.OFFERED:
                    self._finish(oldest, OfferStatus.EXPIRED, now)
                self._drop(oldest)
                dropped.append(oldest)
        return dropped

    def forget_request(self, key: tuple[Any, ...]) -> None:
        """Forget which request produced offers (a repeated request gets new ones)."""
        self.by_request.pop(key, None)

    def accept(self, offer: Offer, accepted_text: str) -> None:
        """The reviewer applied ``offer``; ``accepted_text`` is the unit as rewritten."""
        offer.accepted_text, offer.accepted_at = accepted_text, self.now()
        self._finish(offer, OfferStatus.ACCEPTED, None)

    def reject(self, offer: Offer) -> None:
        """The reviewer rejected ``offer`` (an accepted one stays accepted)."""
        if offer.status is OfferStatus.OFFERED:
            self._finish(offer, OfferStatus.REJECTED, self.now())

    def tick(self, settings: ServerSettings, text_of: Callable[[str], str | None]) -> list[Note]:
        """One round of bookkeeping at the clock's time: unanswered offers past
        ``offer_expiry_s`` become ``ignored``; accepted ones are tracked in their document's
        current text (``text_of(uri)``, None when closed); finished ones older than
        ``offer_keep_s`` are dropped.  Returns the feedback due."""
        now = self.now()
        notes: list[Note] = []
        with self.lock:
            for offer in list(self.by_id.values()):
                if offer.status is OfferStatus.OFFERED:
                    if now - offer.created >= settings.offer_expiry_s:
                        self._finish(offer, OfferStatus.IGNORED, now)
                        notes.append(Note(offer, "ignore"))
                elif offer.status is OfferStatus.ACCEPTED and offer.finished_at is None:
                    notes += track(offer, text_of(offer.uri), now, settings)
                    if offer.checkpoints_done >= len(settings.edit_checkpoints):
                        offer.finished_at = now
                if (
                    offer.finished_at is not None
                    and now - offer.finished_at >= settings.offer_keep_s
                ):
                    self._drop(offer)
        return notes

    def _finish(self, offer: Offer, status: OfferStatus, at: float | None) -> None:
        offer.status, offer.finished_at = status, at
        self.forget_request(offer.request)

    def _drop(self, offer: Offer) -> None:
        self.by_id.pop(offer.id, None)
        self.forget_request(offer.request)
        newest = self.latest.get(offer.request[:-1])
        if newest is not None and newest[0] == offer.request:
            del self.latest[offer.request[:-1]]


def track(offer: Offer, text: str | None, now: float, settings: ServerSettings) -> list[Note]:
    """Edit tracking and inline comments of one accepted offer in its document's ``text``
    (None: closed, then the checkpoints lapse unreported)."""
    checkpoints = settings.edit_checkpoints
    elapsed = now - offer.accepted_at
    if text is None:
        while (
            offer.checkpoints_done < len(checkpoints)
            and elapsed >= checkpoints[offer.checkpoints_done]
        ):
            offer.checkpoints_done += 1
        return []
    notes: list[Note] = []
    original = offer.ranking.unit
    unit = find_unit(text, original.qualname, original.start_line)
    current = unit.source if unit is not None else ""
    if unit is not None:
        lines = text.splitlines(keepends=True)
        region = "".join(lines[max(0, unit.start_line - 2) : unit.end_line + 1])
        for line, comment in inline_comments(region, offer.accepted_text).items():
            old = offer.comments.get(line)
            if old is None or old[0] != comment:
                offer.comments[line] = (comment, now)
            elif now - old[1] >= settings.comment_quiet_s and comment not in offer.comments_sent:
                offer.comments_sent.add(comment)
                notes.append(Note(offer, "comment", {"text": comment[:MAX_TEXT]}))
    while (
        offer.checkpoints_done < len(checkpoints) and elapsed >= checkpoints[offer.checkpoints_done]
    ):
        after = checkpoints[offer.checkpoints_done]
        offer.checkpoints_done += 1
        if current in (offer.accepted_text, offer.last_reported):
            continue
        offer.last_reported = current
        reverted = current.strip() == original.source.strip()
        notes.append(
            Note(
                offer,
                "edit",
                {
                    "diff": correction(offer, current),
                    "survived": 0.0
                    if reverted
                    else survival(original.source, offer.accepted_text, current),
                    "after_s": after,
                    "text": "full revert" if reverted else None,
                },
            )
        )
    return notes
