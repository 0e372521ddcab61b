"""Bounds on per-document work: oversize units, RecursionError as "no refinements", lanes."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from trustfix.server import guards
from trustfix.server.guards import NOTHING, AnalysisLanes, analyse_bounded, oversize
from trustfix.server.settings import ServerSettings
from trustfix.server.units import units

NESTED = "def f():\n    return " + "[" * 3000 + "]" * 3000 + "\n"
PLAIN = "def add(a, b):\n    if a == None:\n        return b\n    return a + b\n"


def test_oversize_stops_at_the_first_bound() -> None:
    (unit,) = units(NESTED)
    assert oversize(unit, 100, 10**6) == "nested deeper than 100"
    assert oversize(unit, 10**6, 500) == "more than 500 syntax nodes"
    assert oversize(units(PLAIN)[0], 100, 20_000) is None


def test_deep_units_get_no_refinements_without_analysis(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    (unit,) = units(NESTED)
    assert analyse_bounded(ServerSettings(), NESTED, unit, "n.py", None) == NOTHING
    assert "nested deeper than 100" in caplog.text


def test_recursion_in_the_operators_means_no_refinements(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair engine walks the tree without recursion today; any RecursionError that still
    escapes the analysis (a proposer, ruff's JSON) is caught at the server's call site."""

    def recurse(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(guards, "analyse", recurse)
    (unit,) = units(NESTED)
    unbounded = ServerSettings(max_unit_depth=10**6, max_unit_nodes=10**6)
    assert analyse_bounded(unbounded, NESTED, unit, "n.py", None) == NOTHING
    assert "too deeply nested for the operators" in caplog.text


def test_plain_units_are_analysed() -> None:
    findings, candidates, state = analyse_bounded(
        ServerSettings(), PLAIN, units(PLAIN)[0], "p.py", None
    )
    assert "E711" in {f.code for f in findings} and candidates and state


def test_large_documents_have_their_own_lane() -> None:
    lanes = AnalysisLanes(5.0)
    settings = ServerSettings(large_document_chars=1000)
    try:
        assert lanes.lane("x" * 999, settings) is lanes.small
        assert lanes.lane("x" * 1000, settings) is lanes.large
        assert lanes.large.submit(lambda: 1).result() == 1
    finally:
        lanes.shutdown()


def test_large_jobs_give_way_to_small_ones() -> None:
    lanes = AnalysisLanes(large_wait_s=30.0)
    settings = ServerSettings(large_document_chars=10)
    release = threading.Event()
    order: list[str] = []
    try:
        small = lanes.lane("x", settings).submit(lambda: release.wait(30) and order.append("small"))
        large = lanes.lane("x" * 10, settings).submit(lambda: order.append("large"))
        time.sleep(0.3)
        assert not large.done()  # waits while the small lane is busy
        release.set()
        small.result(10), large.result(10)
        assert order == ["small", "large"]
    finally:
        lanes.shutdown()


def test_a_busy_small_lane_cannot_starve_large_jobs() -> None:
    lanes = AnalysisLanes(large_wait_s=0.2)
    settings = ServerSettings(large_document_chars=10)
    release = threading.Event()
    try:
        lanes.lane("x", settings).submit(release.wait, 30)
        assert lanes.lane("x" * 10, settings).submit(lambda: "ran").result(10) == "ran"
    finally:
        release.set()
        lanes.shutdown()
