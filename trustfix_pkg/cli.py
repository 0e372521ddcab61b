"""The ``trustfix`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="trustfix: code refinement that learns how far to trust each reviewer.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: SECTION.FIELD=VALUE (repeatable)."),
]
ConfigOption = Annotated[
    Path, typer.Option("--config", help="pyproject.toml whose [tool.trustfix] table is read.")
]

PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="Where new policies start: pretrained (the shipped checkpoint) or fresh "
        "(random); default: the pretrain.start setting (pretrained).",
    ),
]


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["ppo.lr=0.001"]`` -> ``{"ppo": {"lr": "0.001"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise typer.BadParameter(
                f"expected SECTION.FIELD=VALUE, got {item!r}", param_hint="--set"
            )
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
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write results here.")
    ] = None,
    editor: Annotated[bool, typer.Option(help="First run a scripted editor session.")] = True,
) -> None:
    """The loop on one machine: a scripted reviewer in an editor session against
    ``trustfix serve``, then the learning core learning from noisy simulated reviewers (ours
    against plain PPO)."""
    from trustfix.bench.demo import run_demo

    run_demo(_load(config, set_), seeds, steps, condition, editor, json_out, console)


@app.command()
def serve(
    tcp: Annotated[
        str | None,
        typer.Option("--tcp", metavar="HOST:PORT", help="Serve over TCP instead of stdio."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Outbox, reviewer key, checkpoints.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level (logs go to stderr).")] = "INFO",
    manual_clock: Annotated[
        bool,
        typer.Option(
            "--manual-clock", help="For tests: offers' time moves only by trustfix/advanceClock."
        ),
    ] = False,
    policy: PolicyOption = None,
) -> None:
    """Run the language server (LSP over stdio by default)."""
    import logging
    import sys

    _policy_start(policy)
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from trustfix.server.lsp import server, use_manual_clock
    from trustfix.server.transport import serve_stdio, serve_tcp

    if manual_clock:
        use_manual_clock(server)
    if data_dir is not None:
        server.configure({"dataDir": str(data_dir)})
    if tcp:
        host, _, port = tcp.rpartition(":")
        if not host or not port.isdigit():
            raise typer.BadParameter("expected HOST:PORT", param_hint="--tcp")
        serve_tcp(server, server.settings, host, int(port))
    else:
        serve_stdio(server, server.settings)


@app.command()
def refine(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    line: Annotated[
        int | None, typer.Option(help="Only the function at this 1-based line.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    apply: Annotated[
        int | None,
        typer.Option(
            help="Write the K-th ranked refinement (1-based) of the function at --line into FILE."
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="Refinements shown per function.")] = 3,
    policy: PolicyOption = None,
) -> None:
    """Ranked refinements of FILE's functions in the terminal (the server's code actions)."""
    from trustfix.server.refine import rank_units

    _policy_start(policy)
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
            unit["candidates"] = [
                {k: v for k, v in c.items() if k != "source"} for c in unit["candidates"][:top]
            ]
        typer.echo(json.dumps(ranked, indent=2))
        return
    if apply is None:
        for unit in ranked:
            version = unit["policy_version"]
            typer.echo(
                f"{file}:{unit['start_line']} {unit['unit']}  "
                f"(policy {'v' + str(version) if version is not None else unit['policy']}, "
                f"STOP p={unit['stop_probability']:.2f})"
            )
            for rank, c in enumerate(unit["candidates"][:top], 1):
                typer.echo(f"  {rank}. {c['title']}  p={c['probability']:.2f}  [{c['proposer']}]")


# ---------------------------------------------------------------- trainer daemon and its data

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="The trainer's SQLite store [default: DATA_DIR/trainer/store.sqlite]."
    ),
]


def _trainer_dir() -> Path:
    from trustfix.server.privacy import default_data_dir

    return default_data_dir() / "trainer"


def _open_store(store: Path | None, must_exist: bool = True):
    from trustfix.trainer.store import TrainerStore

    path = store or _trainer_dir() / "store.sqlite"
    if must_exist and not path.is_file():
        raise typer.BadParameter(f"no trainer store at {path}", param_hint="--store")
    return TrainerStore(path)


@app.command()
def train(
    store: StoreOption = None,
    checkpoints: Annotated[
        Path | None, typer.Option(help="Checkpoint folder [default: DATA_DIR/trainer/checkpoints].")
    ] = None,
    endpoint: Annotated[
        str, typer.Option(help="ROUTER endpoint (events in, weights out).")
    ] = "tcp://127.0.0.1:5555",
    pub: Annotated[
        str, typer.Option(help="PUB endpoint (version announcements).")
    ] = "tcp://127.0.0.1:5556",
    keys: Annotated[
        Path | None,
        typer.Option(help="CURVE keys folder (`trustfix keys`); required off loopback."),
    ] = None,
    torch_threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 1,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
    log_level: Annotated[str, typer.Option(help="Logging level (logs go to stderr).")] = "INFO",
    policy: PolicyOption = None,
) -> None:
    """Run the trainer daemon: store feedback, keep reviewer confidence, train and publish.

    Under torchrun (WORLD_SIZE > 1) worker 0 is this daemon and the other workers learn from
    their shards of the feedback (see trustfix.trainer.distributed)."""
    import logging
    import signal
    import sys

    from trustfix.trainer.distributed import rank, run_worker
    from trustfix.trainer.ingest import TrainerDaemon
    from trustfix.trainer.wire import InsecureEndpointError

    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _policy_start(policy)
    cfg = _load(config, set_)
    stream = cfg.stream
    store_path = store or _trainer_dir() / "store.sqlite"
    checkpoints = checkpoints or _trainer_dir() / "checkpoints"
    if rank() > 0:
        try:
            run_worker(store_path, checkpoints, cfg, stream, torch_threads)
        except RuntimeError as exc:
            console.print(f"trustfix train (worker {rank()}): {exc}", style="red", markup=False)
            raise typer.Exit(2) from exc
        return
    try:
        daemon = TrainerDaemon(
            store_path, checkpoints, endpoint, pub, cfg, stream, keys, torch_threads
        )
    except (InsecureEndpointError, RuntimeError, FileNotFoundError) as exc:
        console.print(f"[red]trustfix train: {exc}[/red]")
        raise typer.Exit(2) from exc
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    console.print(f"trustfix train: events on {daemon.endpoint}, versions on {daemon.pub_endpoint}")
    daemon.serve_forever()
    if daemon.learner_exitcode:
        raise typer.Exit(1)


@app.command()
def keys(
    folder: Annotated[Path, typer.Argument(help="Where the key files go.")],
    name: Annotated[str, typer.Option(help="Name of the server key pair to add.")] = "server",
) -> None:
    """Make CURVE key pairs: the trainer's (once) and one server's, admitted in FOLDER/allowed."""
    from trustfix.trainer.wire import make_keys

    public, secret = make_keys(folder, name)
    console.print(
        f"trainer keys: {folder}/trainer.key(_secret); server {name!r}: {public}, "
        f"{secret} (mode 0600). Copy {folder} to each end, keep *_secret files private."
    )


@app.command()
def reviewers(
    store: StoreOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each pseudonymous reviewer's Beta confidence: alpha, beta, theta and item count."""
    rows = (_open_store(store).load_estimator_rows() or {}).get("reviewers", [])
    out = sorted(
        (
            {
                "reviewer": r["reviewer"],
                "alpha": r["alpha"],
                "beta": r["beta"],
                "theta": r["alpha"] / (r["alpha"] + r["beta"]),
                "items": r["count"],
            }
            for r in rows
        ),
        key=lambda r: -r["theta"],
    )
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title="reviewers")
    for column in ("reviewer", "alpha", "beta", "theta", "items"):
        table.add_column(column)
    for r in out:
        table.add_row(
            r["reviewer"],
            f"{r['alpha']:.2f}",
            f"{r['beta']:.2f}",
            f"{r['theta']:.3f}",
            str(r["items"]),
        )
    Console().print(table)


@app.command()
def explain(
    feedback_id: Annotated[str, typer.Argument(help="A feedback event's id.")],
    store: StoreOption = None,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
) -> None:
    """Why a feedback item got its weight: prior, each update, alpha, beta, theta, delta, q (JSON)."""
    from trustfix.trainer.admin import explain as explain_item

    try:
        report = explain_item(_open_store(store), _load(config, set_), feedback_id)
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0], param_hint="FEEDBACK_ID") from exc
    typer.echo(json.dumps(report, indent=2))


@app.command()
def export(
    reviewer: Annotated[str, typer.Option("--reviewer", help="Pseudonymous reviewer id.")],
    store: StoreOption = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
) -> None:
    """All of one reviewer's data as JSON: events, confidence, each item's account."""
    from trustfix.trainer.admin import export_reviewer

    data = export_reviewer(_open_store(store), _load(config, set_), reviewer)
    text = json.dumps(data, indent=2)
    if out:
        out.write_text(text)
    else:
        typer.echo(text)


@app.command()
def forget(
    reviewer: Annotated[str, typer.Option("--reviewer", help="Pseudonymous reviewer id.")],
    store: StoreOption = None,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
) -> None:
    """Delete one reviewer's events and their contribution to everyone's confidence."""
    from trustfix.trainer.admin import forget_offline
    from trustfix.trainer.store import TrainerStore, hold_store_lock

    opened = _open_store(store)
    deleted = opened.request_forget(reviewer)
    try:
        lock = hold_store_lock(opened.path)
    except RuntimeError:
        console.print(
            f"deleted {deleted} events of {reviewer}; the running trainer removes their "
            "confidence contributions within a second"
        )
        return
    cfg = _load(config, set_)
    with lock:
        removed = forget_offline(opened, cfg)
    for path in sorted(opened.path.parent.glob(f"{opened.path.stem}.rank*{opened.path.suffix}")):
        worker = TrainerStore(path)  # a distributed run's other workers keep their own stores
        try:
            deleted += worker.request_forget(reviewer)
            removed += forget_offline(worker, cfg)
        finally:
            worker.close()
    console.print(
        f"deleted {deleted} events of {reviewer}; {removed} feedback items removed and "
        "everyone's confidence recomputed"
    )


@app.command()
def status(
    store: StoreOption = None,
    outbox: Annotated[
        Path | None, typer.Option(help="A server's outbox.sqlite, for its depth.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Policy versions, queue depths and rejected messages by reason."""
    from trustfix.trainer.admin import status as store_status

    report = store_status(_open_store(store))
    if outbox is not None:
        from trustfix.server.outbox import Outbox

        report["outbox"] = Outbox(outbox).count()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    latest = report["latest_version"]
    typer.echo(
        f"policy: {'v' + str(latest) if latest is not None else 'none published'} "
        f"({len(report['versions'])} versions)"
    )
    typer.echo(
        f"events: {report['events']} ({report['suggestions']} suggestions, "
        f"{report['feedback']} feedback); not yet learned from: {report['unprocessed']}, "
        f"not yet trained on: {report['untrained']}"
    )
    if "outbox" in report:
        typer.echo(f"outbox: {report['outbox']} events waiting")
    rejects = ", ".join(f"{k} {v}" for k, v in report["rejects"].items()) or "none"
    typer.echo(f"rejected: {rejects}")
    typer.echo(
        f"connections closed or dropped: {report['disconnects']} (a frame over "
        "stream.hard_limit_bytes drops one)"
    )


@app.command()
def bench(
    condition: Annotated[
        str, typer.Option(help="Reviewer condition: high, mixed, low or all.")
    ] = "all",
    methods: Annotated[
        list[str] | None,
        typer.Option(help="Methods (repeatable or comma-separated): ours, ppo, hp-ppo, ua-trpo."),
    ] = None,
    ablations: Annotated[
        bool, typer.Option("--ablations", help="Also run Table 2's ablations.")
    ] = False,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per method and condition (default 8).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Training steps per run (default 2048).")
    ] = None,
    test_tasks: Annotated[
        int | None, typer.Option(help="Held-out tasks evaluated (default: all, about 169).")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="CI size: few tasks and steps, one seed.")
    ] = False,
    encoder: Annotated[
        str | None, typer.Option(help="Estimator encoder: hashing or embedded.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("bench-results"),
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes running runs in parallel (default: the usable CPUs; 1: in this process)."
        ),
    ] = None,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
    policy: PolicyOption = None,
) -> None:
    """The experiment: Table 1, Table 2, Figures 1-2, reviewer estimates, the feedback log."""
    import sys

    from trustfix.bench.experiment import bench_config, plan_steps, run_bench

    _policy_start(policy)
    cfg = _load(config, set_)
    chosen = [m.strip() for item in methods or [] for m in item.split(",") if m.strip()]
    try:
        bench_cfg = bench_config(
            condition,
            chosen,
            ablations,
            quick,
            seeds=seeds,
            steps=steps,
            encoder=encoder,
            policy=policy,
            test_tasks=test_tasks,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("starting", total=plan_steps(bench_cfg))
        results = run_bench(
            bench_cfg,
            cfg,
            out,
            " ".join(["trustfix", *sys.argv[1:]]),
            workers,
            on_step=lambda: progress.advance(bar),
            on_run=lambda name: progress.update(bar, description=name),
        )
    console.print((out / "table1.md").read_text())
    console.print((out / "table2.md").read_text())
    console.print((out / "paired.md").read_text())
    console.print(f"wall time {results['wall_time_s']:.1f} s; outputs in {out}")


@app.command()
def pretrain(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint folder (default: DATA_DIR/pretrained); the shipped one is "
            "trainer/policies/pretrained."
        ),
    ] = None,
    config: ConfigOption = Path("pyproject.toml"),
    set_: SetOption = None,
) -> None:
    """Pretrain the ranker on corrupted functions of the standard library and installed packages
    (settings: the pretrain and ranker sections)."""
    import sys

    import torch
    from trustfix.bench.pretrain_data import pretrain_ranker
    from trustfix.server.privacy import default_data_dir

    cfg = _load(config, set_)
    torch.set_num_threads(1)
    out = out or default_data_dir() / "pretrained"
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as progress:
        corpus = progress.add_task("corpus (files read)", total=None, note="")
        examples = progress.add_task("examples (functions)", total=None, note="")
        training = progress.add_task("training (steps)", total=None, note="")
        run = pretrain_ranker(
            cfg,
            out,
            " ".join(["trustfix", *sys.argv[1:]]),
            on_corpus=lambda: progress.advance(corpus),
            on_examples=lambda done, total: progress.update(examples, completed=done, total=total),
            on_step=lambda step, total, loss: progress.update(
                training, completed=step, total=total, note=f"loss {loss:.3f}"
            ),
        )
    held = run.result.heldout
    console.print(
        f"corpus: {run.manifest.kept} functions ({run.manifest.files} files); "
        f"examples: {run.counts}"
    )
    console.print(
        f"held-out top-1 {held.get('top1', float('nan')):.3f} "
        f"(uniform {held.get('uniform_top1', float('nan')):.3f}), top-5 "
        f"{held.get('top5', float('nan')):.3f} (uniform {held.get('uniform_top5', float('nan')):.3f})"
    )
    console.print(
        f"checkpoint {run.checkpoint.path} sha256 {run.checkpoint.sha256[:16]}; "
        f"{run.seconds:.0f} s in all, training {run.result.seconds:.0f} s"
    )


def _policy_start(policy: str | None) -> None:
    """``--policy``: where new policies start, for this process and the ones it starts (the
    ``pretrain.start`` setting through its environment variable)."""
    import os

    from trustfix.trainer.policies import STARTS

    if policy is None:
        return
    if policy not in STARTS:
        raise typer.BadParameter(f"expected one of {', '.join(STARTS)}", param_hint="--policy")
    os.environ["TRUSTFIX_PRETRAIN__START"] = policy


def main() -> None:
    app()


if __name__ == "__main__":
    main()
