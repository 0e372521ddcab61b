"""Small deterministic events for tests and benchmarks: suggestions with diff candidates,
feedback of every kind, and a stream mixing them (each suggestion followed by feedback from two
different reviewers)."""

from __future__ import annotations

import hashlib

from .events import CandidateRecord, Evidence, Feedback, Suggestion

FEEDBACK_KINDS = ("accept", "reject", "score", "comment")
"""The feedback kinds :func:`event_stream` cycles through."""


def make_suggestion(
    i: int,
    reviewer: str = "r-a",
    candidates: int = 3,
    revision: int = 0,
    verdict: str | None = None,
) -> Suggestion:
    """Suggestion ``s{i}`` with ``candidates`` small diff candidates (execution evidence when
    ``verdict`` is given)."""
    records = [
        CandidateRecord(
            f"candidate {c} of unit {i % 50}",
            "operator",
            f"-    return a < b{c}\n+    return a <= b{c}\n",
            3 + c,
            hashlib.sha256(f"{i}:{c}".encode()).hexdigest(),
            -1.1,
        )
        for c in range(candidates)
    ]
    evidence = (
        None
        if verdict is None
        else Evidence("pytest", 3, 0 if verdict == "supports" else 2, 0, verdict)
    )  # type: ignore[arg-type]
    return Suggestion(
        id=f"s{i}",
        policy_version=None,
        state=f"def unit_{i % 50}(a, b):\n    return a < b\n",
        state_sha256=hashlib.sha256(f"state {i % 50}".encode()).hexdigest(),
        features={"candidates": float(candidates)},
        candidates=records,
        chosen=1 + i % candidates,
        old_log_prob=-1.1,
        reviewer=reviewer,
        role="developer",
        time=float(i),
        revision=revision,
        r_env=None if verdict is None else (1.0 if verdict == "supports" else 0.6),
        evidence=evidence,
    )


def make_feedback(
    i: int, suggestion_id: str, reviewer: str = "r-a", kind: str = "accept"
) -> Feedback:
    """Feedback ``f{i}`` of ``kind`` on ``suggestion_id``."""
    extra = (
        {"score": 1 + i % 5}
        if kind == "score"
        else {"text": f"looks wrong at line {i % 7}"}
        if kind == "comment"
        else {}
    )
    return Feedback(
        id=f"f{i}",
        suggestion_id=suggestion_id,
        reviewer=reviewer,
        role="student",
        kind=kind,
        time=float(i),
        **extra,
    )  # type: ignore[arg-type]


def event_stream(n: int, reviewers: int = 5) -> list[Suggestion | Feedback]:
    """``n`` events: each suggestion followed by feedback from two different reviewers."""
    events: list[Suggestion | Feedback] = []
    i = 0
    while len(events) < n:
        s = make_suggestion(i, f"r-{i % reviewers}")
        events.append(s)
        for j in range(2):
            if len(events) < n:
                events.append(
                    make_feedback(
                        2 * i + j,
                        s.id,
                        f"r-{(i + j) % reviewers}",
                        FEEDBACK_KINDS[(i + j) % len(FEEDBACK_KINDS)],
                    )
                )
        i += 1
    return events
