"""The scripted editor session of ``make demo`` and ``trustfix refine`` against the real server."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from trustfix.bench.editor_demo import run_editor_demo

BUGGY = "def add(a, b):\n    if a == None:\n        return b\n    return a - b\n"


@pytest.mark.slow
@pytest.mark.timeout(600)  # the suggestions are verified in the sandbox; the trainer settles
def test_editor_session_streams_every_event_to_the_trainer():
    counts = run_editor_demo(2, console=Console(file=io.StringIO()))
    assert counts["outbox"] == {"suggestion": 0}  # everything acked by the trainer
    trainer = counts["trainer"]
    assert trainer["feedback"] == 8  # accept, score, reject, comment on each of two tasks
    assert trainer["suggestion"] >= 4 and trainer["versions"] >= 1
    assert 0 < trainer["trust"] < 1  # the reviewer's trust came back to the editor
    # as it is after the trainer's updates: its newest version, and trust moved by the tests' evidence
    assert trainer["policy_version"] == trainer["latest_version"] is not None
    assert (trainer["alpha"], trainer["beta"]) != (1.0, 1.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_editor_session_without_a_trainer_keeps_everything_in_the_outbox():
    counts = run_editor_demo(2, console=Console(file=io.StringIO()), with_trainer=False)
    outbox = counts["outbox"]
    assert outbox["accept"] == outbox["score"] == outbox["comment"] == outbox["reject"] == 2
    assert outbox["suggestion"] >= 4 and "trainer" not in counts


def test_refine_json_lists_ranked_candidates(tmp_path: Path):
    path = tmp_path / "buggy.py"
    path.write_text(BUGGY)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustfix",
            "refine",
            str(path),
            "--line",
            "2",
            "--json",
            "--top",
            "100",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (unit,) = json.loads(out.stdout)
    probs = [c["probability"] for c in unit["candidates"]]
    assert unit["unit"] == "add" and probs == sorted(probs, reverse=True)
    assert any("a is None" in c["diff"] for c in unit["candidates"])
    assert any(c["proposer"] == "operator" and "a + b" in c["diff"] for c in unit["candidates"])
