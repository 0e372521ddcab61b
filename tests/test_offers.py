"""The offer lifecycle on a manual clock: every offer reaches a final state and is dropped, and
the book stays within its cap however many requests come."""

from __future__ import annotations

import pytest
from trustfix.server.offers import ManualClock, Offer, OfferBook, OfferStatus, survival
from trustfix.server.proposers import Candidate
from trustfix.server.session import Ranking
from trustfix.server.settings import ServerSettings
from trustfix.server.units import units

SOURCE = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
SETTINGS = ServerSettings(
    offer_expiry_s=10.0,
    offer_keep_s=100.0,
    edit_checkpoints=(5.0, 20.0),
    comment_quiet_s=1.0,
    max_offers=6,
)


def ranking() -> Ranking:
    """A ranking of ``add`` with one candidate (the fix)."""
    candidate = Candidate("swap - for +", "operator", "", FIXED, 2)
    return Ranking(units(SOURCE)[0], "state", (), (candidate,), (-1.0, -0.5), None)


def offers(n: int, request: str) -> list[Offer]:
    return [Offer(f"{request}-{i}", "file:///m.py", SOURCE, ranking(), 0) for i in range(n)]


def test_unanswered_offers_are_ignored_then_dropped_and_repeat_requests_reuse_ids() -> None:
    clock = ManualClock()
    book = OfferBook(clock)
    made = offers(3, "r1")
    book.add(("m.py", "r1"), made, SETTINGS.max_offers)
    assert book.open_offers(("m.py", "r1")) == made
    clock.advance(9.9)
    assert book.tick(SETTINGS, lambda uri: SOURCE) == []
    clock.advance(0.1)
    notes = book.tick(SETTINGS, lambda uri: SOURCE)
    assert [(n.offer.id, n.kind) for n in notes] == [
        ("r1-0", "ignore"),
        ("r1-1", "ignore"),
        ("r1-2", "ignore"),
    ]
    assert all(o.status is OfferStatus.IGNORED for o in made)
    assert book.open_offers(("m.py", "r1")) is None  # a repeated request now gets new offers
    assert book.tick(SETTINGS, lambda uri: SOURCE) == []  # ignored once only
    clock.advance(99.9)
    book.tick(SETTINGS, lambda uri: SOURCE)
    assert len(book) == 3
    clock.advance(0.1)
    book.tick(SETTINGS, lambda uri: SOURCE)
    assert len(book) == 0 and book.get("r1-0") is None


def test_accepted_offer_is_tracked_until_its_last_checkpoint_then_dropped() -> None:
    clock = ManualClock()
    book = OfferBook(clock)
    accepted, rejected = offers(2, "r")
    book.add(("m.py", "r"), [accepted, rejected], SETTINGS.max_offers)
    book.accept(accepted, FIXED)
    book.reject(rejected)
    assert (accepted.status, rejected.status) == (OfferStatus.ACCEPTED, OfferStatus.REJECTED)
    edited = "def add(a, b):\n    # trustfix: b first\n    return b + a\n"
    clock.advance(4.0)
    assert book.tick(SETTINGS, lambda uri: edited) == []  # the comment is seen, not yet quiet
    clock.advance(1.0)
    notes = book.tick(SETTINGS, lambda uri: edited)
    assert sorted(n.kind for n in notes) == ["comment", "edit"]
    (edit,) = [n for n in notes if n.kind == "edit"]
    assert edit.fields["after_s"] == 5.0 and "+    return b + a" in edit.fields["diff"]
    assert edit.fields["survived"] == 0.0 and edit.fields["text"] is None
    assert accepted.finished_at is None
    clock.advance(15.0)
    assert book.tick(SETTINGS, lambda uri: edited) == []  # unchanged since the last report
    assert accepted.finished_at == 20.0
    clock.advance(100.0)
    book.tick(SETTINGS, lambda uri: edited)
    assert len(book) == 0


def test_closed_document_lets_the_checkpoints_lapse_unreported() -> None:
    clock = ManualClock()
    book = OfferBook(clock)
    (offer,) = offers(1, "r")
    book.add(("m.py", "r"), [offer], SETTINGS.max_offers)
    book.accept(offer, FIXED)
    clock.advance(20.0)
    assert book.tick(SETTINGS, lambda uri: None) == []
    assert offer.finished_at == 20.0 and offer.checkpoints_done == 2
    assert survival(SOURCE, FIXED, FIXED) == 1.0 and survival(SOURCE, FIXED, SOURCE) == 0.0


def test_book_stays_within_its_cap_dropping_the_oldest_as_expired() -> None:
    clock = ManualClock()
    book = OfferBook(clock)
    first = offers(3, "a")
    book.add(("m.py", "a"), first, SETTINGS.max_offers)
    for i in range(100):
        clock.advance(0.01)
        dropped = book.add((f"n{i}.py", "b"), offers(3, f"b{i}"), SETTINGS.max_offers)
        assert len(book) <= SETTINGS.max_offers
        if i == 1:  # the cap (6) is passed: the first request goes
            assert dropped == first and all(o.status is OfferStatus.EXPIRED for o in first)
    assert book.open_offers(("m.py", "a")) is None and len(book.by_request) == 2
    assert book.tick(SETTINGS, lambda uri: SOURCE) == []  # expired offers record nothing


def test_manual_clock_never_goes_back() -> None:
    clock = ManualClock(5.0)
    assert clock.advance(1.5) == 6.5 == clock()
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1.0)


def test_a_new_order_of_the_same_unit_supersedes_the_open_offers() -> None:
    book = OfferBook(ManualClock())
    old, new = offers(2, "old"), offers(2, "new")
    book.add(("m.py", "hash", (0, 1)), old, SETTINGS.max_offers)
    book.reject(old[1])
    assert book.open_offers(("m.py", "hash", (1, 0))) is None
    assert [o.status for o in old] == [OfferStatus.EXPIRED, OfferStatus.REJECTED]
    book.add(("m.py", "hash", (1, 0)), new, SETTINGS.max_offers)
    assert book.open_offers(("m.py", "hash", (1, 0))) == new
    assert book.tick(SETTINGS, lambda uri: SOURCE) == []  # superseded offers record nothing
