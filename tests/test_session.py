"""The policy host: rankings in the model thread, and its answers reused for unchanged input."""

from pathlib import Path

import pytest
from trustfix.server.session import PolicyHost


def test_policy_answers_are_reused_for_the_same_state_and_candidates(tmp_path: Path) -> None:
    host = PolicyHost(tmp_path / "checkpoints", poll_s=60.0)
    try:
        first, version = host.rank("def f(x):\n    return x", ["swap", "negate"]).result(120)
        assert version is None and len(first) == 3 and len(host.outputs) == 1
        again, _ = host.rank("def f(x):\n    return x", ["swap", "negate"]).result(120)
        assert again == first and len(host.outputs) == 1
        other, _ = host.rank("def f(x):\n    return x", ["negate", "swap"]).result(120)
        assert len(host.outputs) == 2 and sorted(other[1:]) == pytest.approx(sorted(first[1:]))
    finally:
        host.close()
