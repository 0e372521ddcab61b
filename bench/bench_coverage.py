"""Coverage of bench tasks per bug family: is the true fix among the first step's candidates?

Run: ``.venv/bin/python -m trustfix.bench.bench_coverage``.  Tasks come from
:func:`~trustfix.bench.tasks.make_tasks` (bugs drawn by the bench's own bug model, several per
problem with ``--bugs``); for each bug family: the tasks, how many have their exact true fix
among all repair edits of the entry point, and among :func:`~trustfix.server.proposers.propose`'s
candidates at the language server's cap (ruff, ruff format and repair edits under the budget).
``--uniform`` draws every bug family with the same weight instead of the bug model's
frequencies, so that each family gets enough tasks for its own coverage figure.
"""

from __future__ import annotations

import typer
from trustfix.bench.bugs import BUG_MODEL, BugFamily
from trustfix.bench.oracle import BUILD_SANDBOX, ProposeFn, entry_range, family_coverage
from trustfix.bench.tasks import Task, make_tasks
from trustfix.server.proposers import propose
from trustfix.server.sandbox import Sandbox
from trustfix.server.settings import ServerSettings
from trustfix.server.units import units


def capped_proposer(task: Task, cap: int) -> ProposeFn:
    """``propose()`` on the task's entry point at ``cap`` candidates, as the server calls it."""

    def candidates(source: str) -> list[str]:
        lo, _ = entry_range(source, task.entry_point)
        unit = next(u for u in units(source) if u.start_byte == lo)
        return [c.source for c in propose(source, unit, cap=cap)]

    return candidates


def main(
    seed: int = typer.Option(0, help="Task seed."),
    bugs: int = typer.Option(1, help="Bugs (tasks) per HumanEval problem."),
    cap: int = typer.Option(ServerSettings().max_candidates, help="propose()'s cap."),
    uniform: bool = typer.Option(False, help="Every bug family drawn with the same weight."),
) -> None:
    """Print, per bug family, the tasks and the share whose true fix is among the candidates."""
    model = (
        {f: BugFamily(1.0, "uniform, for coverage") for f in BUG_MODEL} if uniform else BUG_MODEL
    )
    with Sandbox(BUILD_SANDBOX) as sandbox:
        tasks = make_tasks(seed, sandbox=sandbox, bugs_per_problem=bugs, model=model)
    everything = family_coverage(tasks)
    budgeted = family_coverage(tasks, lambda t: capped_proposer(t, cap))
    drawn = "uniform over families" if uniform else "bug model frequencies"
    typer.echo(f"tasks: {len(tasks)} (seed {seed}, {bugs} bug(s) per problem, {drawn}), cap {cap}")
    typer.echo(
        f"{'bug family':<16}{'tasks':>7}{'all repair edits':>18}{f'propose() cap {cap}':>20}"
    )
    for family, (hits, total) in everything.items():
        capped = budgeted[family][0]
        typer.echo(f"{family:<16}{total:>7}{hits / total:>18.0%}{capped / total:>20.0%}")
    hits = sum(h for h, _ in everything.values())
    capped = sum(h for h, _ in budgeted.values())
    typer.echo(f"{'all':<16}{len(tasks):>7}{hits / len(tasks):>18.0%}{capped / len(tasks):>20.0%}")


if __name__ == "__main__":
    typer.run(main)
