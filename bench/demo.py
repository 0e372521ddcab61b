"""``make demo``: the loop on one machine, as ``trustfix demo`` runs it.

First a scripted reviewer's editor session against ``trustfix serve`` (see
:mod:`trustfix.bench.editor_demo`), then the learning core on a noisy-feedback bandit, ours
against plain PPO, with a table of the results."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

METHODS = ("ours", "ppo")
"""The methods the demo compares."""


def run_demo(
    cfg: Any,
    seeds: int,
    steps: int,
    condition: str,
    editor: bool = True,
    json_out: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """The editor session (with ``editor``), then ``seeds`` bandit runs of ``steps`` steps per
    method on the ``condition`` reviewer pool, configured by ``cfg`` (a ``TrustfixConfig``);
    prints the table and returns the bandit's summary (also written to ``json_out``)."""
    from trustfix.trainer.synthetic import BanditConfig, run_bandit, summarize

    out = Console()
    if editor:
        from trustfix.bench.editor_demo import run_editor_demo

        out.rule("1. a reviewer's editor session (trustfix serve over LSP)")
        run_editor_demo()
        out.rule("2. the learning core on a noisy-feedback bandit")
    results = []
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
    ) as progress:
        bar = progress.add_task("training", total=len(METHODS) * seeds * steps)
        for seed in range(seeds):
            for method in METHODS:
                progress.update(bar, description=f"{method} seed {seed}")
                bandit = BanditConfig(steps=steps, condition=condition, seed=seed)
                results.append(
                    run_bandit(
                        method,
                        bandit,
                        cfg.ppo,
                        cfg.trust_region,
                        cfg.confidence,
                        cfg.ranker,
                        on_step=lambda _: progress.advance(bar),
                    )
                )
    summary = summarize(results)
    table = Table(
        title=f"Noisy-feedback bandit, {condition} reviewers, {seeds} seeds x {steps} steps"
    )
    for column in (
        "method",
        "final accuracy",
        "95% CI",
        "mean accuracy over training",
        "reviewer Spearman",
        "reviewer MAE",
    ):
        table.add_column(column)
    for method, row in summary["methods"].items():
        table.add_row(
            method,
            f"{row['final_accuracy']:.3f}",
            f"[{row['final_ci'][0]:.3f}, {row['final_ci'][1]:.3f}]",
            f"{row['mean_accuracy']:.3f}",
            f"{row['reviewer_spearman']:.2f}",
            f"{row['reviewer_mae']:.3f}",
        )
    out.print(table)
    out.print(
        f"random policy accuracy: {summary['random_accuracy']:.3f}; "
        f"wall time {time.perf_counter() - started:.1f} s"
    )
    if json_out:
        json_out.write_text(json.dumps(summary, indent=2))
    return summary
