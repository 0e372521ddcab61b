"""The wire schema between language servers and the trainer: Suggestion and Feedback events.

Both ends validate with :func:`decode_event`: unknown fields, wrong types, out-of-range values,
an unknown event type or another schema version are rejected with an :class:`EventError` that
says why, never a crash.  Events are JSON (msgspec), one event per message or outbox row.

A Suggestion is one offered refinement: the state the policy saw, every candidate it ranked, the
action it stands for (``chosen``; 0 is STOP, candidate ``i`` is action ``i + 1``, as in
:mod:`trustfix.trainer.policies`), that action's log-probability under the policy that offered
it, and the policy version.  A later *revision* of the same suggestion (same ``id``, higher
``revision``) carries the execution evidence once tests have run; receivers keep the highest
revision.  Under the ``noCode`` telemetry level ``state`` and the candidates' ``diff`` are None and
only hashes and features travel.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1
"""Version of this schema; events of any other version are rejected."""

MAX_TEXT = 2000
"""Longest comment text accepted (characters), as the editor client enforces too."""

FeedbackKind = Literal["accept", "reject", "ignore", "edit", "comment", "score"]
"""accept/reject: explicit; ignore: an offer that expired unused (weak reject); edit: a
correction diff of an accepted change (``diff``); comment: ``text``; score: ``score`` 1-5."""

Role = Literal["developer", "student", "instructor"]
"""Reviewer roles."""

Verdict = Literal["supports", "refutes", "neutral"]
"""What execution says about the feedback given on a suggestion."""

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Hash = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16,64}$")]
_Version = Annotated[int, msgspec.Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]


class CandidateRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One ranked candidate: its title, proposer, diff (None under ``noCode``), 1-based line,
    sha256 of its text and its log-probability under the offering policy."""

    title: Annotated[str, msgspec.Meta(max_length=500)]
    proposer: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    diff: str | None
    line: Annotated[int, msgspec.Meta(ge=1)]
    sha256: _Hash
    log_prob: Annotated[float, msgspec.Meta(le=0.0)]


def candidate_text(title: str, diff: str | None) -> str:
    """What a policy reads of a candidate: its title, then only the changed lines of its diff.

    File headers, hunk markers and context lines are dropped: the state already shows the
    unit's numbered source, and the policy's cost grows with every token of every candidate.
    """
    changed = [
        line
        for line in (diff or "").splitlines()
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    return "\n".join([title, *changed])


class Evidence(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Outcome of running the workspace's tests after an accepted change."""

    command: str
    passed: Annotated[int, msgspec.Meta(ge=0)]
    failed: Annotated[int, msgspec.Meta(ge=0)]
    exit_code: int
    verdict: Verdict
    summary: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""


class Suggestion(
    msgspec.Struct, tag="suggestion", tag_field="type", forbid_unknown_fields=True, frozen=True
):
    """One offered refinement (see the module docstring)."""

    id: _Id
    policy_version: Annotated[int, msgspec.Meta(ge=0)] | None
    state: str | None
    state_sha256: _Hash
    features: dict[str, float]
    candidates: Annotated[list[CandidateRecord], msgspec.Meta(min_length=1)]
    chosen: Annotated[int, msgspec.Meta(ge=0)]
    old_log_prob: Annotated[float, msgspec.Meta(le=0.0)]
    reviewer: _Id
    role: Role
    time: float
    revision: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    r_env: float | None = None
    evidence: Evidence | None = None
    v: _Version = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.chosen > len(self.candidates):
            raise ValueError(
                f"chosen action {self.chosen} out of range for {len(self.candidates)} candidates"
            )


class Feedback(
    msgspec.Struct, tag="feedback", tag_field="type", forbid_unknown_fields=True, frozen=True
):
    """One piece of a reviewer's feedback on a suggestion."""

    id: _Id
    suggestion_id: _Id
    reviewer: _Id
    role: Role
    kind: FeedbackKind
    time: float
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None = None
    diff: str | None = None
    score: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    survived: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """edit only: share of the accepted change's lines still present."""
    after_s: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    """edit only: seconds after the accept when the diff was taken."""
    v: _Version = SCHEMA_VERSION

    def __post_init__(self) -> None:
        needs = {"comment": "text", "score": "score", "edit": "diff"}.get(self.kind)
        if needs is not None and getattr(self, needs) is None:
            raise ValueError(f"{self.kind} feedback needs {needs}")
        if self.kind == "comment" and not self.text.strip():
            raise ValueError("comment feedback needs non-blank text")


Event = Suggestion | Feedback
"""Any event on the wire."""


class EventError(ValueError):
    """An event was rejected; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Event)
_VERSION_PROBE = msgspec.json.Decoder(dict)


def new_id() -> str:
    """A fresh random event or suggestion id."""
    return uuid.uuid4().hex


def now() -> float:
    """Wall-clock time in seconds (the events' ``time``)."""
    return time.time()


def event_key(event: Event) -> str:
    """The idempotency key of an event: the id, plus ``@revision`` for suggestions."""
    if isinstance(event, Suggestion):
        return f"{event.id}@{event.revision}"
    return event.id


def encode_event(event: Event) -> bytes:
    """JSON bytes of a validated event (it is re-checked first, so nothing invalid is sent)."""
    if not isinstance(event, Suggestion | Feedback):
        raise EventError(f"not an event: {type(event).__name__}")
    data = _ENCODER.encode(event)
    decode_event(data)
    return data


def decode_event(data: bytes | str) -> Event:
    """Parse and validate one event; :class:`EventError` with the reason when it is rejected."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as error:
        try:
            version = _VERSION_PROBE.decode(data).get("v", SCHEMA_VERSION)
        except msgspec.DecodeError:
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise EventError(
                f"schema version {version!r} not supported (expected {SCHEMA_VERSION})"
            ) from error
        raise EventError(f"invalid event: {error}") from error
    except msgspec.DecodeError as error:
        raise EventError(f"malformed event: {error}") from error


_BATCH_DECODER = msgspec.json.Decoder(list[Event])
_BATCH_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def encode_batch(bodies: list[bytes]) -> bytes:
    """One batch of encoded events (each as :func:`encode_event` made it) as a JSON array."""
    return b"[" + b",".join(bodies) + b"]"


def decode_batch(data: bytes) -> tuple[list[tuple[Event, msgspec.Raw]], dict[int, EventError]]:
    """Validate every event of a batch (:func:`encode_batch`): the valid ones with their bytes as
    sent (a buffer SQLite stores as is), and the rejected ones by index with the reason.

    The whole array is validated in one call; only when that fails is each element decoded on
    its own to say which were rejected and why.  :class:`EventError` when ``data`` is not a
    JSON array (then no element can be told apart from the next)."""
    try:
        items = _BATCH_ITEMS.decode(data)
    except msgspec.DecodeError as error:
        raise EventError(f"malformed batch: {error}") from error
    try:
        return list(zip(_BATCH_DECODER.decode(data), items, strict=True)), {}
    except msgspec.DecodeError:
        pass
    good, rejected = [], {}
    for index, raw in enumerate(items):
        try:
            good.append((decode_event(raw), raw))
        except EventError as error:
            rejected[index] = error
    return good, rejected
