"""Pretraining examples: corpus functions, corrupted by the repair operators, with the candidates
the server would offer.

An example is one state (:func:`trustfix.server.state.state_text` of the function as a file of
its own), the texts of its candidates (:func:`trustfix.server.proposers.propose` with the ruff,
``ruff format`` and operator proposers, as the benchmark uses them) and the actions that are
right:

- **repair**: the function after one edit of the repair operators, the family drawn uniformly
  among the families that apply and then one of its edits (wrong-variable edits are most of all
  possible edits; sampling them by frequency would teach little else).  Right: the candidate
  whose program is the original.  An example whose original is not among the candidates is
  dropped (and counted).
- **stop**: a clean function without fixable findings.  Right: STOP.
- **style**: a clean function with fixable ruff findings.  Right: any of ruff's fixes (and
  ``ruff format``).

With ``trace_share`` the state carries a test trace: failing tests after a corruption, passing
ones otherwise, as an editor with tests would show.  Everything built from public entry points
(``operator_edits``, ``propose``, ``state_text``), so new repair families and candidate budgets
reach the examples without change here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from trustfix.bench.corpus import Function, Manifest, load_corpus
from trustfix.server.findings import (
    DEFAULT_CONFIG,
    AnalysisConfig,
    Finding,
    parse_ruff_json,
    ruff_check_command,
    ruff_format_command,
)
from trustfix.server.operators import operator_edits
from trustfix.server.proposers import Candidate, propose, unified_diff
from trustfix.server.state import TestTrace, state_text
from trustfix.server.units import Unit, units
from trustfix.trainer.config import PretrainConfig, TrustfixConfig
from trustfix.trainer.events import candidate_text
from trustfix.trainer.policies import CheckpointInfo, RankerPolicy, save_checkpoint
from trustfix.trainer.pretrain import Example, PretrainResult, kept_candidates, pretrain

PROPOSERS = ("ruff", "operator")
"""Proposers :func:`propose` runs per example; ``ruff format``'s candidate is added from one
batch run (:func:`with_format`).  semgrep's arrive asynchronously in the server and are left
out, as in the benchmark."""
IGNORED_RULES = frozenset({"F821"})
"""ruff rules dropped from the examples' findings: a function taken out of its module has
undefined names (its imports stay behind) that it does not have in its file."""
FILENAME = "unit.py"
"""File name every example's program is checked and diffed under."""
CHUNK = 64
"""Functions handled together: one ``ruff check`` process for all their programs."""


def is_heldout(key: str, share: float) -> bool:
    """Whether the corpus function with this key belongs to the held-out share."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8 < share


def outer_unit(source: str) -> Unit | None:
    """The function a one-function source is about: its outermost unit."""
    found = [u for u in units(source) if u.start_line == 1]
    return max(found, key=lambda u: u.end_line, default=None)


def ruff_many(
    sources: Sequence[str], config: AnalysisConfig = DEFAULT_CONFIG
) -> tuple[list[list[Finding]], list[str]]:
    """ruff's findings and ``ruff format`` output of many sources, from one ``ruff check`` and
    one ``ruff format`` over a temporary folder (the server's command lines, the folder in place
    of stdin).  Findings of :data:`IGNORED_RULES` are left out."""
    with tempfile.TemporaryDirectory(prefix="trustfix-ruff-") as folder:
        files = [Path(folder, f"f{i}.py") for i in range(len(sources))]
        for path, source in zip(files, sources, strict=True):
            path.write_text(source)
        command = ruff_check_command(FILENAME, config)[:-3] + [folder]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        subprocess.run(
            ruff_format_command(FILENAME, None, config)[:-3] + [folder],
            capture_output=True,
            check=False,
        )
        formatted = [path.read_text() for path in files]
    by_file: dict[str, list[dict]] = {}
    for item in json.loads(result.stdout or "[]"):
        if item.get("code") not in IGNORED_RULES:
            by_file.setdefault(Path(item["filename"]).name, []).append(item)
    findings = [parse_ruff_json(json.dumps(by_file.get(path.name, [])), config) for path in files]
    return findings, formatted


def with_format(
    candidates: list[Candidate], program: str, formatted: str, unit: Unit
) -> list[Candidate]:
    """``candidates`` with the ``ruff format`` candidate where :func:`propose` puts it (after
    ruff's fixes), made from a batch ``ruff format`` result instead of one process per program."""
    if not formatted or formatted == program or any(c.source == formatted for c in candidates):
        return candidates
    title = f"ruff format {unit.qualname} (lines {unit.start_line}-{unit.end_line})"
    line = next(
        (
            i
            for i, (a, b) in enumerate(zip(program.splitlines(), formatted.splitlines()), 1)
            if a != b
        ),
        1,
    )
    fmt = Candidate(
        title, "ruff-format", unified_diff(program, formatted, FILENAME), formatted, line
    )
    at = sum(c.proposer == "ruff" for c in candidates)
    return [*candidates[:at], fmt, *candidates[at:]]


def synthetic_trace(rng: random.Random, failing: bool) -> TestTrace:
    """A test run's trace: 1-3 failed of 2-6 tests after a corruption, all passed otherwise."""
    total = rng.randint(2, 6)
    if not failing:
        return TestTrace(total, 0)
    failed = rng.randint(1, min(3, total))
    failures = tuple((f"test_{i}", "AssertionError", None) for i in range(failed))
    return TestTrace(total - failed, failed, failures)


@dataclass(frozen=True)
class Draft:
    """One example before its candidates: the program, its kind and the right outcome."""

    key: str
    kind: str
    """``repair``, ``stop`` or ``style``."""
    family: str
    """The corrupting operator family (repair), else the kind."""
    program: str
    original: str
    trace: TestTrace | None


def draft(fn: Function, findings: list[Finding], cfg: PretrainConfig) -> Draft | None:
    """The example ``fn`` gives (kind drawn with the configured shares; None when nothing
    applies, e.g. a stop draw on a function with fixable findings)."""
    rng = random.Random(f"{cfg.seed}:{fn.key}")
    unit = outer_unit(fn.source)
    if unit is None:
        return None
    draw = rng.random()
    traced = rng.random() < cfg.trace_share
    fixable = any(f.fix is not None for f in findings)
    if draw < cfg.repair_share:
        edits = operator_edits(fn.source, unit.start_byte, unit.end_byte)
        families = sorted({e.family for e in edits})
        if not families:
            return None
        family = rng.choice(families)
        edit = rng.choice([e for e in edits if e.family == family])
        trace = synthetic_trace(rng, failing=True) if traced else None
        return Draft(fn.key, "repair", family, edit.source, fn.source, trace)
    kind = "stop" if draw < cfg.repair_share + cfg.stop_share else "style"
    if (kind == "style") != fixable:
        return None
    trace = synthetic_trace(rng, failing=False) if traced else None
    return Draft(fn.key, kind, kind, fn.source, fn.source, trace)


def right_actions(d: Draft, candidates: Sequence[Candidate]) -> tuple[int, ...]:
    """Actions (0: STOP, i + 1: candidate i) that are right for draft ``d``."""
    if d.kind == "stop":
        return (0,)
    if d.kind == "style":
        return tuple(i + 1 for i, c in enumerate(candidates) if c.proposer.startswith("ruff"))
    return tuple(i + 1 for i, c in enumerate(candidates) if c.source == d.original)


def make_examples(
    functions: Sequence[Function], cfg: PretrainConfig
) -> tuple[list[Example], Counter[str]]:
    """Examples from ``functions`` (one each at most) and counts of what was made or dropped."""
    counts: Counter[str] = Counter()
    clean, _ = ruff_many([fn.source for fn in functions])
    drafts = [draft(fn, found, cfg) for fn, found in zip(functions, clean, strict=True)]
    kept = [d for d in drafts if d is not None]
    counts["no example drawn"] += len(drafts) - len(kept)
    findings_of, formatted_of = ruff_many([d.program for d in kept])
    out = []
    for d, findings, formatted in zip(kept, findings_of, formatted_of, strict=True):
        rng = random.Random(f"{cfg.seed}:{d.key}:candidates")
        unit = outer_unit(d.program)
        if unit is None:
            counts["unparsable corruption"] += 1
            continue
        candidates = propose(
            d.program, unit, findings=findings, proposers=PROPOSERS, filename=FILENAME
        )
        candidates = with_format(candidates, d.program, formatted, unit)
        right = right_actions(d, candidates)
        if not right:
            counts[f"{d.kind}: no right candidate"] += 1
            continue
        kept, right = kept_candidates(len(candidates), right, cfg.max_candidates, rng)
        candidates = [candidates[i] for i in kept]
        state = state_text(unit, findings, d.trace)
        texts = [candidate_text(c.title, c.diff) for c in candidates]
        out.append(Example(state, texts, right, d.kind, d.family, d.key))
        counts[f"{d.kind}"] += 1
    return out, counts


def _chunk_job(args: tuple[list[Function], PretrainConfig]) -> tuple[list[Example], Counter[str]]:
    return make_examples(*args)


def sample_functions(
    functions: Sequence[Function], cfg: PretrainConfig
) -> tuple[list[Function], list[Function]]:
    """The training and held-out samples: functions drawn with ``cfg.seed``, a few more than
    examples are wanted (some draws give none), split by key."""
    rng = random.Random(cfg.seed)
    heldout = [f for f in functions if is_heldout(f.key, cfg.heldout_share)]
    train = [f for f in functions if not is_heldout(f.key, cfg.heldout_share)]
    over = 1.3
    return (
        rng.sample(train, min(len(train), int(cfg.examples * over))),
        rng.sample(heldout, min(len(heldout), int(cfg.heldout_examples * over))),
    )


def build_examples(
    functions: Sequence[Function],
    cfg: PretrainConfig,
    want: int,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[list[Example], Counter[str]]:
    """Up to ``want`` examples from ``functions`` in chunks of :data:`CHUNK`, over
    ``cfg.workers`` processes; ``on_chunk(functions done)`` after each chunk."""
    chunks = [list(functions[i : i + CHUNK]) for i in range(0, len(functions), CHUNK)]
    out: list[Example] = []
    counts: Counter[str] = Counter()
    if cfg.workers <= 1:
        results = (make_examples(c, cfg) for c in chunks)
        for chunk, (examples, found) in zip(chunks, results, strict=True):
            out += examples
            counts += found
            if on_chunk:
                on_chunk(len(chunk))
    else:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for chunk, (examples, found) in zip(
                chunks, pool.map(_chunk_job, [(c, cfg) for c in chunks]), strict=True
            ):
                out += examples
                counts += found
                if on_chunk:
                    on_chunk(len(chunk))
    return out[:want], counts


def examples_cache_key(corpus_sha256: str, cfg: PretrainConfig, split: str) -> str:
    """What a cached example set depends on: the corpus, the data settings, the split and the
    code that makes candidates (operators, proposers, state)."""
    from trustfix.server import operators, proposers, state

    digest = hashlib.sha256(
        json.dumps(
            [
                corpus_sha256,
                split,
                cfg.seed,
                cfg.examples,
                cfg.heldout_examples,
                cfg.heldout_share,
                cfg.repair_share,
                cfg.stop_share,
                cfg.trace_share,
                cfg.max_candidates,
            ]
        ).encode()
    )
    for module in (operators, proposers, state):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def save_examples(path: Path, examples: Sequence[Example]) -> None:
    """Write examples as JSONL (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for ex in examples:
            fh.write(json.dumps(asdict(ex)) + "\n")
    os.replace(tmp, path)


def read_examples(path: Path) -> list[Example]:
    """Examples written by :func:`save_examples`."""
    out = []
    for line in path.open():
        data = json.loads(line)
        data["right"] = tuple(data["right"])
        out.append(Example(**data))
    return out


@dataclass
class PretrainRun:
    """What :func:`pretrain_ranker` made: the checkpoint and how."""

    checkpoint: CheckpointInfo
    result: PretrainResult
    counts: dict[str, int]
    manifest: Manifest
    seconds: float


def example_sets(
    cfg: PretrainConfig,
    cache_dir: Path,
    on_corpus: Callable[[], None] | None = None,
    on_examples: Callable[[int, int], None] | None = None,
) -> tuple[list[Example], list[Example], Counter[str], Manifest]:
    """Training and held-out examples (cached under ``cache_dir/pretrain`` by
    :func:`examples_cache_key`; the corpus under ``cache_dir/corpus``), the counts of
    what was made or dropped, and the corpus manifest.  ``on_examples(done, total)`` reports
    functions handled."""
    functions, manifest = load_corpus(cache_dir / "corpus", on_file=on_corpus, workers=cfg.workers)
    train_fns, heldout_fns = sample_functions(functions, cfg)
    total = len(train_fns) + len(heldout_fns)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if on_examples:
            on_examples(done, total)

    sets: list[list[Example]] = []
    counts: Counter[str] = Counter()
    for split, fns, want in (
        ("train", train_fns, cfg.examples),
        ("heldout", heldout_fns, cfg.heldout_examples),
    ):
        path = (
            cache_dir
            / "pretrain"
            / f"{split}-{examples_cache_key(manifest.corpus_sha256, cfg, split)}.jsonl"
        )
        counts_path = path.with_suffix(".counts.json")
        if path.is_file() and counts_path.is_file():
            sets.append(read_examples(path))
            counts.update(json.loads(counts_path.read_text()))
            tick(len(fns))
            continue
        examples, found = build_examples(fns, cfg, want, tick)
        save_examples(path, examples)
        counts_path.write_text(json.dumps(found))
        sets.append(examples)
        counts.update(found)
    return sets[0], sets[1], counts, manifest


def pretrain_ranker(
    cfg: TrustfixConfig,
    out: Path,
    command: str,
    cache_dir: Path | None = None,
    on_corpus: Callable[[], None] | None = None,
    on_examples: Callable[[int, int], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> PretrainRun:
    """``trustfix pretrain``: corpus -> examples -> a fresh ranker (``cfg.ranker``) trained on
    them -> version 1 in ``out``, its JSON recording the corpus manifest, the example counts,
    the held-out figures, the training time and ``command``.  ``on_step(step, total, loss)``."""
    started = time.perf_counter()
    pre = cfg.pretrain
    cache_dir = cache_dir or AnalysisConfig().cache_dir
    train, heldout, counts, manifest = example_sets(pre, cache_dir, on_corpus, on_examples)
    if not train:
        raise ValueError("the corpus gave no training examples")
    torch.manual_seed(pre.seed)
    policy = RankerPolicy(cfg.ranker)
    total = math.ceil(len(train) / pre.batch_size) * pre.epochs
    result = pretrain(
        policy,
        train,
        heldout,
        pre,
        on_step=lambda step, loss: on_step and on_step(step, total, loss),
    )
    seconds = time.perf_counter() - started
    metadata = {
        "command": command,
        "pretrain": asdict(pre),
        "corpus": asdict(manifest),
        "examples": {"train": len(train), "heldout": len(heldout), **dict(counts)},
        "heldout": result.heldout,
        "losses": result.losses,
        "train_seconds": result.seconds,
        "total_seconds": seconds,
    }
    info = save_checkpoint(policy, out, 1, metadata)
    return PretrainRun(info, result, dict(counts), manifest, seconds)
