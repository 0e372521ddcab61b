"""Distributed training: the reviewer-increment exchange (in one process, then between two real
torchrun workers on CPU with gloo) and one DDP update across both workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from trustfix.trainer.confidence import (
    ConfidenceEstimator,
    FeedbackItem,
    estimator_from_rows,
    estimator_to_rows,
)
from trustfix.trainer.config import ConfidenceConfig, RankerConfig
from trustfix.trainer.distributed import parameter_digest, shard_of, worker_store_path
from trustfix.trainer.encoders import get_encoder
from trustfix.trainer.events import Feedback, Suggestion, encode_event
from trustfix.trainer.policies import RankerPolicy, load_checkpoint
from trustfix.trainer.sample_events import event_stream, make_feedback, make_suggestion
from trustfix.trainer.store import TrainerStore

PRIOR = ConfidenceConfig().reviewer_prior


def estimator() -> ConfidenceEstimator:
    return ConfidenceEstimator(ConfidenceConfig(), get_encoder("hashing"), get_encoder("hashing"))


def votes(est: ConfidenceEstimator, suggestion: str, pairs: list[tuple[str, str]]) -> None:
    """One item per (reviewer, kind) on ``suggestion``: agreements and disagreements by polarity."""
    for n, (reviewer, kind) in enumerate(pairs):
        est.observe(FeedbackItem(f"{suggestion}-{n}", suggestion, reviewer, "student", kind))


def own_sums(rows: dict, reviewer: str) -> tuple[float, float]:
    """Prior + every increment that this estimator applied to ``reviewer``'s items."""
    owner = {r["id"]: r["reviewer"] for r in rows["items"]}
    alpha, beta = PRIOR
    for u in rows["updates"]:
        if owner[u["item_id"]] == reviewer:
            alpha += u["increment"] if u["consistent"] else 0.0
            beta += 0.0 if u["consistent"] else u["increment"]
    return alpha, beta


def exchange(workers: list[ConfidenceEstimator], full: bool = False) -> None:
    """What exchange_increments does over a process group, done in one process."""
    own = [w.increments(full) for w in workers]
    totals: dict[str, tuple[float, float, int]] = {}
    for increments in own:
        for name, (a, b, n) in increments.items():
            ta, tb, tn = totals.get(name, (0.0, 0.0, 0))
            totals[name] = (ta + a, tb + b, tn + n)
    for w, mine in zip(workers, own, strict=True):
        w.add_increments(totals, mine, full)


def test_exchanged_increments_add_up_survive_saving_and_forgetting():
    a, b = estimator(), estimator()
    votes(a, "s1", [("ann", "accept"), ("bob", "accept"), ("cat", "reject")])
    votes(b, "s2", [("bob", "reject"), ("dan", "accept")])
    exchange([a, b])
    ra, rb = a.reviewers(), b.reviewers()
    assert set(ra) == set(rb) == {"ann", "bob", "cat", "dan"}  # dan is known to a only remotely
    for name in ra:
        assert (ra[name].alpha, ra[name].beta, ra[name].count) == (
            rb[name].alpha,
            rb[name].beta,
            rb[name].count,
        )
        own_a, own_b = own_sums(estimator_to_rows(a), name), own_sums(estimator_to_rows(b), name)
        assert ra[name].alpha == pytest.approx(own_a[0] + own_b[0] - PRIOR[0])
        assert ra[name].beta == pytest.approx(own_a[1] + own_b[1] - PRIOR[1])
    assert ra["bob"].count == 2 and ra["bob"].beta > PRIOR[1] and ra["bob"].alpha > PRIOR[0]
    assert a.increments() == {}  # nothing pending right after an exchange
    # later increments travel as increments: only what changed since
    votes(b, "s3", [("dan", "accept"), ("cat", "accept")])
    assert set(b.increments()) == {"dan", "cat"}
    exchange([a, b])
    assert a.reviewers()["dan"].alpha == b.reviewers()["dan"].alpha > 1.0
    # the remote share is saved and comes back
    back = estimator_from_rows(
        estimator_to_rows(a), ConfidenceConfig(), get_encoder("hashing"), get_encoder("hashing")
    )
    assert estimator_to_rows(back) == estimator_to_rows(a)
    assert back.reviewers()["dan"].alpha == a.reviewers()["dan"].alpha
    # forgetting dan: a drops dan's remote share but keeps everyone else's; a full exchange
    # after both forgot leaves no trace of dan and everyone else as before the forget
    before = {n: (s.alpha, s.beta) for n, s in a.reviewers().items()}
    a.forget_reviewer("dan")
    assert "dan" not in a.reviewers()
    b.forget_reviewer("dan")
    exchange([a, b], full=True)
    after = [a.reviewers(), b.reviewers()]
    c = ConfidenceConfig().increment
    expected = {
        "ann": before["ann"],  # never met dan
        "bob": (before["bob"][0], before["bob"][1] - c),  # disagreed with dan on s2
        "cat": (before["cat"][0] - c, before["cat"][1]),
    }  # agreed with dan on s3
    for reviewers in after:
        assert set(reviewers) == set(expected)
        assert {n: (s.alpha, s.beta) for n, s in reviewers.items()} == expected  # exact: c = 1/4


RANKER = [
    "--set",
    "ranker.d_model=32",
    "--set",
    "ranker.n_layers=1",
    "--set",
    "ranker.max_tokens=96",
    "--set",
    "ranker.state_tokens=48",
]


@pytest.mark.timeout(180)
def test_two_torchrun_workers_share_confidence_and_one_policy(
    tmp_path: Path, free_port: Callable[[], int]
):
    store_path = tmp_path / "store.sqlite"
    events = event_stream(240, reviewers=6)
    # execution evidence on a few suggestions (a later revision with a verdict)
    events += [
        make_suggestion(i, f"r-{i % 6}", revision=1, verdict="supports" if i % 2 else "refutes")
        for i in range(0, 80, 7)
    ]
    events += [make_feedback(10_000 + i, f"s{i}", "r-late", "score") for i in range(0, 80, 5)]
    # worker 0's shard first: the first update comes before worker 1 has any sample
    events.sort(key=lambda e: shard_of(e.id if isinstance(e, Suggestion) else e.suggestion_id, 2))
    per_shard = [
        sum(shard_of(e.suggestion_id, 2) == r for e in events if isinstance(e, Feedback))
        for r in (0, 1)
    ]
    store = TrainerStore(store_path)
    store.add_batch([(e, encode_event(e)) for e in events])
    store.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "-m",
            "trustfix.trainer",
            "--store",
            str(store_path),
            "--checkpoints",
            str(tmp_path / "ckpt"),
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
            "--config",
            str(tmp_path / "none.toml"),
            "--log-level",
            "INFO",
            "--set",
            "encoders.text_encoder=hashing",
            "--set",
            "encoders.code_encoder=hashing",
            "--set",
            "distributed.tick_events=25",
            "--set",
            "distributed.sync_every=3",
            "--set",
            "ppo.epochs=2",
            "--set",
            "ppo.minibatch_size=32",
            "--set",
            f"stream.update_every={per_shard[0] * 3 // 4}",
            "--set",
            "stream.update_min_interval_s=0",
            "--set",
            "stream.stop_after_updates=2",
            *RANKER,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]

    main = TrainerStore(store_path)
    worker = TrainerStore(worker_store_path(store_path, 1))
    rows = [main.load_estimator_rows(), worker.load_estimator_rows()]
    handed_out = [e for _, e in main.events_after(0, main.get_state("processed_seq"))]
    feedback = [e for e in handed_out if isinstance(e, Feedback)]
    assert len(feedback) > per_shard[0]  # both shards, beyond the first update
    # each worker learned from its shard only, and together from everything
    for r, shard_rows in enumerate(rows):
        assert shard_rows["items"], f"worker {r} saw nothing"
        assert {shard_of(i["suggestion_id"], 2) for i in shard_rows["items"]} == {r}
    assert sorted(i["id"] for t in rows for i in t["items"]) == sorted(f.id for f in feedback)
    stored = [e for _, e in worker.events_after(0, 10**6)]
    assert {
        shard_of(e.id if isinstance(e, Suggestion) else e.suggestion_id, 2) for e in stored
    } == {1}
    # reviewer Betas: equal on both workers, and the prior plus both shards' increments
    reviewers = [{r["reviewer"]: r for r in t["reviewers"]} for t in rows]
    assert set(reviewers[0]) == set(reviewers[1]) == {f.reviewer for f in feedback}
    for name, mine in reviewers[0].items():
        theirs = reviewers[1][name]
        assert (mine["alpha"], mine["beta"], mine["count"]) == pytest.approx(
            (theirs["alpha"], theirs["beta"], theirs["count"])
        )
        sums = [own_sums(t, name) for t in rows]
        assert mine["alpha"] == pytest.approx(sums[0][0] + sums[1][0] - PRIOR[0])
        assert mine["beta"] == pytest.approx(sums[0][1] + sums[1][1] - PRIOR[1])
        assert mine["count"] == sum(f.reviewer == name for f in feedback)
    assert any(u["source"] == "execution" for t in rows for u in t["updates"])
    # one policy: versions published by worker 0, the same parameters on both, not the initial
    # ones; in the first update worker 1 had no sample and stepped with a zero-weighted stand-in
    first, second = main.versions()
    metrics = main.metrics()
    assert first["samples"] == metrics[0]["samples"] >= per_shard[0] * 3 // 4  # worker 0's alone
    assert second["samples"] > metrics[1]["samples"]  # worker 1's too
    assert first["samples"] + second["samples"] <= len(feedback)
    policy, _ = load_checkpoint(tmp_path / "ckpt", 2)
    digests = {main.get_state("policy_parameters"), worker.get_state("policy_parameters")}
    assert digests == {parameter_digest(policy)}
    torch.manual_seed(0)
    fresh = RankerPolicy(RankerConfig(d_model=32, n_layers=1, max_tokens=96, state_tokens=48))
    assert parameter_digest(fresh) not in digests
    assert main.get_state("world_size") == worker.get_state("world_size") == 2
    main.close()
    worker.close()

    # `trustfix forget` with the trainer stopped reaches every worker's store
    from trustfix.cli import app
    from typer.testing import CliRunner

    gone = feedback[0].reviewer
    out = CliRunner().invoke(
        app,
        [
            "forget",
            "--reviewer",
            gone,
            "--store",
            str(store_path),
            "--config",
            str(tmp_path / "none.toml"),
            "--set",
            "encoders.text_encoder=hashing",
            "--set",
            "encoders.code_encoder=hashing",
            *RANKER,
        ],
    )
    assert out.exit_code == 0, out.output
    for path in (store_path, worker_store_path(store_path, 1)):
        opened = TrainerStore(path)
        assert all(getattr(e, "reviewer", None) != gone for _, e in opened.events_after(0, 10**6))
        left = opened.load_estimator_rows()
        assert gone not in {r["reviewer"] for r in left["reviewers"]}
        assert all(i["reviewer"] != gone for i in left["items"])
        opened.close()
