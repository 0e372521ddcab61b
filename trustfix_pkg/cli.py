"""The ``trustfix`` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="trustfix: code refinement that learns how far to trust each reviewer.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: SECTION.FIELD=VALUE (repeatable)."),
]
ConfigOption = Annotated[
    Path, typer.Option("--config", help="pyproject.toml whose [tool.trustfix] table is read.")
]


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["ppo.lr=0.001"]`` -> ``{"ppo": {"lr": "0.001"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise typer.BadParameter(f"expected SECTION.FIELD=VALUE, got {item!r}", param_hint="--set")
        out.setdefault(section, {})[name] = value
    return out


def _load(config: Path, overrides: list[str] | None):
    from trustfix.trainer.config import load_config

    try:
        return load_config(pyproject=config, overrides=parse_overrides(overrides))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("config")
def show_config(config: ConfigOption = Path("pyproject.toml"), set_: SetOption = None) -> None:
    """Print the effective configuration (defaults < pyproject < environment < --set) as JSON."""
    from trustfix.trainer.config import config_to_dict

    typer.echo(json.dumps(config_to_dict(_load(config, set_)), indent=2))


@app.command()
def demo(
    seeds: Annotated[int, typer.Option(help="Seeds per method.")] = 3,
    steps: Annotated[int, typer.Option(help="Interaction steps per run.")] = 2048,
    condition: Annotated[str, typer.Option(help="Reviewer pool: high, mixed or low.")] = "mixed",
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write results here.")] = None,
    editor: Annotated[bool, typer.Option(help="First run a scripted editor session.")] = True,
) -> None:
    """The loop on one machine: a scripted reviewer in an editor session against
    ``trustfix serve``, then the learning core learning from noisy simulated reviewers (ours
    against plain PPO)."""
    from trustfix.trainer.synthetic import BanditConfig, run_bandit, summarize

    cfg = _load(config, set_)
    if editor:
        from trustfix.bench.editor_demo import run_editor_demo

        Console().rule("1. a reviewer's editor session (trustfix serve over LSP)")
        run_editor_demo()
        Console().rule("2. the learning core on a noisy-feedback bandit")
    methods = ("ours", "ppo")
    results = []
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:
        bar = progress.add_task("training", total=len(methods) * seeds * steps)
        for seed in range(seeds):
            for method in methods:
                progress.update(bar, description=f"{method} seed {seed}")
                bandit = BanditConfig(steps=steps, condition=condition, seed=seed)
                results.append(run_bandit(
                    method, bandit, cfg.ppo, cfg.trust_region, cfg.confidence, cfg.ranker,
                    on_step=lambda _: progress.advance(bar),
                ))
    summary = summarize(results)
    table = Table(title=f"Noisy-feedback bandit, {condition} reviewers, {seeds} seeds x {steps} steps")
    for column in ("method", "final accuracy", "95% CI", "mean accuracy over training",
                   "reviewer Spearman", "reviewer MAE"):
        table.add_column(column)
    for method, row in summary["methods"].items():
        table.add_row(
            method, f"{row['final_accuracy']:.3f}",
            f"[{row['final_ci'][0]:.3f}, {row['final_ci'][1]:.3f}]",
            f"{row['mean_accuracy']:.3f}", f"{row['reviewer_spearman']:.2f}",
            f"{row['reviewer_mae']:.3f}",
        )
    Console().print(table)
    Console().print(
        f"random policy accuracy: {summary['random_accuracy']:.3f}; "
        f"wall time {time.perf_counter() - started:.1f} s"
    )
    if json_out:
        json_out.write_text(json.dumps(summary, indent=2))


@app.command()
def serve(
    tcp: Annotated[str | None, typer.Option("--tcp", metavar="HOST:PORT",
                                            help="Serve over TCP instead of stdio.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Outbox, reviewer key, checkpoints.")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level (logs go to stderr).")] = "INFO",
) -> None:
    """Run the language server (LSP over stdio by default)."""
    import logging
    import sys

    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from trustfix.server.lsp import server

    if data_dir is not None:
        server.configure({"dataDir": str(data_dir)})
    if tcp:
        host, _, port = tcp.rpartition(":")
        if not host or not port.isdigit():
            raise typer.BadParameter("expected HOST:PORT", param_hint="--tcp")
        server.start_tcp(host, int(port))
    else:
        server.start_io()


@app.command()
def refine(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    line: Annotated[int | None, typer.Option(help="Only the function at this 1-based line.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    apply: Annotated[int | None, typer.Option(help="Write the K-th ranked refinement (1-based) "
                                              "of the function at --line into FILE.")] = None,
    top: Annotated[int, typer.Option(help="Refinements shown per function.")] = 3,
) -> None:
    """Ranked refinements of FILE's functions in the terminal (the server's code actions)."""
    from trustfix.server.refine import rank_units

    if apply is not None and line is None:
        raise typer.BadParameter("--apply needs --line", param_hint="--apply")
    try:
        ranked = rank_units(file, line)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if apply is not None:
        candidates = ranked[0]["candidates"]
        if not 1 <= apply <= len(candidates):
            raise typer.BadParameter(f"only {len(candidates)} refinements", param_hint="--apply")
        chosen = candidates[apply - 1]
        file.write_text(chosen["source"])
        console.print(f"applied: {chosen['title']} (p={chosen['probability']:.2f})")
    if json_out:
        for unit in ranked:
            unit["candidates"] = [{k: v for k, v in c.items() if k != "source"}
                                  for c in unit["candidates"][:top]]
        typer.echo(json.dumps(ranked, indent=2))
        return
    if apply is None:
        for unit in ranked:
            version = unit["policy_version"]
            typer.echo(f"{file}:{unit['start_line']} {unit['unit']}  "
                       f"(policy {'v' + str(version) if version is not None else 'fresh'}, "
                       f"STOP p={unit['stop_probability']:.2f})")
            for rank, c in enumerate(unit["candidates"][:top], 1):
                typer.echo(f"  {rank}. {c['title']}  p={c['probability']:.2f}  [{c['proposer']}]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
