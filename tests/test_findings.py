"""ruff and semgrep findings on a fixture with known violations; the state text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from trustfix.server.findings import (
    AnalysisConfig,
    Edit,
    SemgrepCache,
    apply_edits,
    content_hash,
    findings_by_line,
    ruff_findings,
    rules_path,
)
from trustfix.server.state import TestTrace, compact_nodes, state_text
from trustfix.server.units import unit_at

FIXTURE = (Path(__file__).parent / "fixtures" / "violations.txt").read_text()


def _rule_ids() -> set[str]:
    return {rule["id"] for rule in yaml.safe_load(rules_path().read_text())["rules"]}


def test_rules_file_ships_at_least_15_fixable_rules() -> None:
    rules = yaml.safe_load(rules_path().read_text())["rules"]
    assert len(rules) >= 15
    assert all("fix" in rule or "fix-regex" in rule for rule in rules)
    assert rules_path().name == "refinements.yml" and rules_path().parent.name == "rules"


def test_ruff_findings_on_fixture() -> None:
    found = ruff_findings(FIXTURE, "violations.py")
    codes = {(f.code, f.line) for f in found}
    expected = {("F401", 2), ("E711", 6), ("E711", 8), ("E712", 14), ("E722", 66), ("E713", 78)}
    expected |= {("B006", 53), ("SIM103", 34), ("E231", 105), ("E201", 106), ("E202", 106)}
    assert expected <= codes
    e711 = next(f for f in found if f.code == "E711" and f.line == 6)
    assert e711.tool == "ruff" and e711.fix is not None
    fixed = apply_edits(FIXTURE, e711.fix)
    assert "    if x is None:\n" in fixed and fixed.count("\n") == FIXTURE.count("\n")
    e722 = next(f for f in found if f.code == "E722")
    assert e722.fix is None  # ruff has no fix for a bare except
    assert ruff_findings(FIXTURE, "violations.py") == found  # cached, same answer


def test_safe_only_ruff_fixes_when_configured() -> None:
    unsafe = {f.code for f in ruff_findings(FIXTURE) if f.fix is not None}
    safe = {f.code for f in ruff_findings(FIXTURE, config=AnalysisConfig(ruff_unsafe_fixes=False))}
    safe_fixed = {
        f.code
        for f in ruff_findings(FIXTURE, config=AnalysisConfig(ruff_unsafe_fixes=False))
        if f.fix is not None
    }
    assert "E711" in unsafe and "E711" in safe and "E711" not in safe_fixed


def test_apply_edits_uses_character_columns() -> None:
    source = 'x = "é"; y = a == None\n'
    edit = Edit(1, 13, 1, 22, "a is None")
    assert apply_edits(source, [edit]) == 'x = "é"; y = a is None\n'
    with pytest.raises(ValueError):
        apply_edits(source, [Edit(1, 0, 1, 5, ""), Edit(1, 2, 1, 3, "")])


def test_a_crashing_ruff_means_no_findings(caplog: pytest.LogCaptureFixture) -> None:
    deep = "x = " + "+".join(["1"] * 50_000) + "\n"  # ruff aborts: stack overflow (SIGABRT)
    assert ruff_findings(deep, "deep.py") == []
    assert "failed (exit -6" in caplog.text
    caplog.clear()
    assert ruff_findings(deep, "deep.py") == []  # remembered: ruff is not started again
    assert not caplog.text


def test_a_slow_ruff_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    source = "import os\n" * 20_000
    assert ruff_findings(source, "slow.py", AnalysisConfig(ruff_timeout_s=0.0001)) == []
    assert "gave up after" in caplog.text
    assert {f.code for f in ruff_findings(source, "slow.py")} == {"F401", "F811"}


def test_lone_surrogates_hash_and_check() -> None:
    source = "x = '\ud800'\nif x == None:\n    pass\n"
    assert content_hash(source) != content_hash(source.replace("\ud800", "\udfff"))
    assert ("E711", 2) in {(f.code, f.line) for f in ruff_findings(source, "lone.py")}


def test_semgrep_skips_sources_over_its_cap(tmp_path: Path) -> None:
    cache = SemgrepCache(AnalysisConfig(cache_dir=tmp_path, semgrep_max_chars=10))
    try:
        assert cache.get("x = 1 == True\n") == []  # never scanned, answered at once
        assert not (tmp_path / "semgrep").exists()
    finally:
        cache.close()


@pytest.fixture(scope="module")
def semgrep_run(tmp_path_factory) -> tuple[SemgrepCache, list, Path]:
    """One real semgrep call over the fixture, through the background cache."""
    cache_dir = tmp_path_factory.mktemp("trustfix-cache")
    cache = SemgrepCache(AnalysisConfig(cache_dir=cache_dir))
    assert cache.get(FIXTURE) is None  # not ready yet: never blocks
    found = cache.result(FIXTURE, timeout=110)
    yield cache, found, cache_dir
    cache.close()


@pytest.mark.slow
def test_every_semgrep_rule_fires_with_a_fix(semgrep_run) -> None:
    cache, found, cache_dir = semgrep_run
    assert {f.code for f in found} == _rule_ids()
    assert all(f.tool == "semgrep" and f.fix is not None for f in found)
    assert cache.get(FIXTURE) == found  # cached by content now
    assert (cache_dir / "semgrep" / "settings.yml").exists()  # semgrep's home files stay here


@pytest.mark.slow
def test_semgrep_fixes_apply_and_parse(semgrep_run) -> None:
    _, found, _ = semgrep_run
    by_code = {}
    for finding in found:
        fixed = apply_edits(FIXTURE, finding.fix)
        ast.parse(fixed)
        by_code[finding.code] = fixed
    assert "    if y is not None:\n" in by_code["compare-none-ne"]
    assert "    if x not in y:\n" in by_code["not-in"]
    assert "    return bool(n > 0)\n" in by_code["return-bool-if-else"]
    assert "    except Exception:\n" in by_code["bare-except"]
    assert "    for i, _ in enumerate(values):\n" in by_code["range-len-loop"]
    assert (
        "def append_to(item, items=None):\n    if items is None:\n        items = []\n"
        in by_code["mutable-default-list"]
    )
    assert "    return isinstance(v, int)\n" in by_code["type-eq"]
    line = next(f.line for f in found if f.code == "compare-none-eq")
    assert line == 6 and [f.code for f in findings_by_line(found)[6]] == ["compare-none-eq"]


def test_state_text_sections() -> None:
    unit = unit_at(FIXTURE, 106)
    assert unit is not None and unit.name == "style"
    trace = TestTrace(passed=2, failed=1, failures=(("test_style", "AssertionError", 107),))
    text = state_text(unit, ruff_findings(FIXTURE), trace)
    lines = text.splitlines()
    assert lines[0] == "unit style (function, lines 105-107)"
    assert lines[1] == "105| def style(a,b):"
    assert any(
        line.startswith("nodes: function_definition identifier parameters") for line in lines
    )
    assert any(line.startswith("  106: ruff E741") and "E201" in line for line in lines)
    assert "E711" not in text  # findings of other units are left out
    assert lines[-2:] == ["tests: 2 passed, 1 failed", "  test_style: AssertionError at line 107"]
    assert "tests:" not in state_text(unit, [])
    assert compact_nodes(["a", "b", "b", "b", "a"]) == "a b*3 a"
