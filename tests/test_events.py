"""The event schema: round trips, and rejection of unknown or malformed events with a reason."""

from __future__ import annotations

import json

import msgspec
import pytest
from trustfix.trainer.events import (
    CandidateRecord,
    EventError,
    Feedback,
    Suggestion,
    decode_event,
    encode_event,
    event_key,
)


def suggestion(**changes) -> Suggestion:
    base = Suggestion(
        id="s1",
        policy_version=3,
        state="unit f",
        state_sha256="ab" * 32,
        features={"candidates": 2.0},
        candidates=[
            CandidateRecord("swap < for <=", "operator", "-a\n+b\n", 4, "cd" * 32, -0.5),
            CandidateRecord("ruff format", "ruff-format", None, 1, "ef" * 32, -1.2),
        ],
        chosen=1,
        old_log_prob=-0.5,
        reviewer="r-" + "0" * 32,
        role="student",
        time=1.0,
    )
    return msgspec.structs.replace(base, **changes)


def test_round_trip_and_keys() -> None:
    s = suggestion()
    f = Feedback(
        id="f1",
        suggestion_id="s1",
        reviewer="r-1",
        role="developer",
        kind="score",
        time=2.0,
        score=4,
    )
    assert decode_event(encode_event(s)) == s
    assert decode_event(encode_event(f)) == f
    assert event_key(s) == "s1@0" and event_key(msgspec.structs.replace(s, revision=1)) == "s1@1"
    assert event_key(f) == "f1"
    assert json.loads(encode_event(f))["type"] == "feedback"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.update(type="vote"), "Invalid value 'vote'"),
        (lambda d: d.update(v=2), "schema version 2 not supported"),
        (lambda d: d.update(score=6), "<= 5"),
        (lambda d: d.update(kind="like"), "Invalid enum value 'like'"),
        (lambda d: d.update(score=None), "score feedback needs score"),
        (lambda d: d.update(role="boss"), "Invalid enum value 'boss'"),
        (lambda d: d.pop("suggestion_id"), "missing required field `suggestion_id`"),
        (lambda d: d.update(time="yesterday"), "Expected `float`"),
        (lambda d: d.update(kind="comment", score=None, text="  "), "non-blank text"),
        (lambda d: d.update(kind="comment", score=None, text="x" * 2001), "length <= 2000"),
    ],
)
def test_feedback_rejections_say_why(mutate, reason: str) -> None:
    data = json.loads(
        encode_event(
            Feedback(
                id="f1",
                suggestion_id="s1",
                reviewer="r-1",
                role="developer",
                kind="score",
                time=2.0,
                score=4,
            )
        )
    )
    mutate(data)
    with pytest.raises(EventError, match=reason) as info:
        decode_event(json.dumps(data))
    assert reason.split()[0] in info.value.reason


def test_suggestion_rejections() -> None:
    good = json.loads(encode_event(suggestion()))
    for change, reason in [
        ({"chosen": 3}, "out of range"),
        ({"candidates": []}, "length >= 1"),
        ({"state_sha256": "xyz"}, "matching regex"),
        ({"old_log_prob": 0.5}, "<= 0.0"),
    ]:
        with pytest.raises(EventError, match=reason):
            decode_event(json.dumps({**good, **change}))
    for junk in (b"", b"\xff\xfe", b"[1, 2]", b'{"type": "suggestion"'):
        with pytest.raises(EventError):
            decode_event(junk)


def test_encode_refuses_invalid_events() -> None:
    with pytest.raises(EventError, match=r"<= 0\.0"):
        encode_event(suggestion(old_log_prob=1.0))
    with pytest.raises(EventError, match="not an event"):
        encode_event({"type": "feedback"})


def test_candidate_text_keeps_title_and_changed_lines_only() -> None:
    from trustfix.trainer.events import candidate_text

    diff = (
        "--- a/f.py\n+++ b/f.py\n@@ -1,3 +1,3 @@\n def f(x):\n-    return x < 0\n"
        "+    return x <= 0\n     # done\n"
    )
    assert candidate_text("swap < for <= on line 2", diff) == (
        "swap < for <= on line 2\n-    return x < 0\n+    return x <= 0"
    )
    assert candidate_text("STOP-like", None) == "STOP-like"
