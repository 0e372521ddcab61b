"""The learning process of ``trustfix train`` (:func:`run_learner`, a child of the daemon in
:mod:`trustfix.trainer.ingest`).

:class:`Learner` follows the stored events in order, joins each Feedback with its Suggestion,
updates the confidence estimator (agreement between items, execution evidence from suggestion
revisions), and every ``update_every`` samples or ``update_seconds`` runs the PPO update with
the confidence-adaptive trust region, saves a checkpoint and records the version; the ingest
side announces it.  Everything it knows is in the store (estimator tables, ``processed_seq``,
``trained_seq``, versions, metrics) or in the checkpoint folder, so a restart resumes.

The process ends with its parent: it watches a pipe whose other end only the daemon holds, and
exits as soon as that pipe reads end-of-file (the daemon gone, even by SIGKILL).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .confidence import (
    ConfidenceEstimator,
    FeedbackItem,
    estimator_from_rows,
    estimator_to_rows,
    feedback_content,
)
from .config import StreamConfig, TrustfixConfig
from .encoders import cosine_similarity, get_encoder
from .events import Feedback, Suggestion, candidate_text
from .policies import initial_policy, latest_version, load_checkpoint, save_checkpoint
from .ppo import PPOLearner, RolloutBuffer
from .store import TrainerStore
from .trust_region import human_signal

log = logging.getLogger(__name__)

ORPHAN_EXIT = 70
"""Exit code of a learning process whose daemon died (EX_SOFTWARE)."""


def feedback_item(feedback: Feedback, suggestion: Suggestion | None) -> FeedbackItem:
    """The estimator's view of a Feedback event; its location is the state it was given on."""
    return FeedbackItem(
        id=feedback.id,
        suggestion_id=feedback.suggestion_id,
        reviewer=feedback.reviewer,
        role=feedback.role,
        kind=feedback.kind,
        text=feedback.text,
        diff=feedback.diff,
        score=feedback.score,
        location=suggestion.state_sha256 if suggestion else None,
        time=feedback.time,
    )


def execution_verifies(feedback: Feedback, suggestion: Suggestion) -> bool | None:
    """Whether the tests run after the change verify (True) or refute (False) the feedback: an
    accept or good score is verified when they support the change, a reject or bad score when
    they refute it; None without a verdict or a polarity."""
    if suggestion.evidence is None or suggestion.evidence.verdict == "neutral":
        return None
    if feedback.kind == "accept" or (feedback.kind == "score" and (feedback.score or 3) >= 4):
        positive = True
    elif feedback.kind in ("reject", "ignore") or (
        feedback.kind == "score" and (feedback.score or 3) <= 2
    ):
        positive = False
    else:
        return None
    return positive == (suggestion.evidence.verdict == "supports")


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`Learner.step` did."""

    worked: bool
    """Whether newly stored events were processed."""
    announcement: dict[str, Any] | None
    """The new policy version's announcement, when the step published one."""


@dataclass
class Sample:
    """One training sample: a feedback item joined with the suggestion it is about."""

    feedback: Feedback
    suggestion: Suggestion


class Learner:
    """The learning process's state: estimator, policy, PPO learner, pending samples."""

    def __init__(
        self,
        store: TrainerStore,
        checkpoints: Path,
        cfg: TrustfixConfig,
        stream: StreamConfig,
        world_size: int = 1,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """``world_size`` workers share the feedback, one shard each, and this learner trains
        only on the suggestions it ``owns`` (by id; all when None); see
        :mod:`trustfix.trainer.distributed`."""
        self.store, self.checkpoints, self.cfg, self.stream = store, checkpoints, cfg, stream
        self.world_size = world_size
        self.owns = owns
        text = get_encoder(cfg.encoders.text_encoder, cfg.encoders.max_length)
        self.code_encoder = get_encoder(cfg.encoders.code_encoder, cfg.encoders.max_length)
        encoders = {
            "text": cfg.encoders.text_encoder,
            "code": cfg.encoders.code_encoder,
            "max_length": cfg.encoders.max_length,
        }
        rows = store.load_estimator_rows()
        recorded = store.get_state("encoders")
        if rows is not None and recorded is not None and recorded != encoders:
            raise ValueError(
                f"the store's confidence state was built with encoders {recorded}, "
                f"not {encoders}: run with the same [encoders] settings"
            )
        shards = store.get_state("world_size", 1)
        if rows is not None and shards != self.world_size:
            raise ValueError(
                f"the store's confidence state was built by {shards} worker(s), not "
                f"{self.world_size}: the feedback is sharded by worker, so restart "
                "with the same number of workers"
            )
        store.set_state(encoders=encoders, world_size=self.world_size)
        if rows is None:
            self.estimator = ConfidenceEstimator(cfg.confidence, text, self.code_encoder)
            self.executed: set[str] = set()
        else:
            self.estimator = estimator_from_rows(rows, cfg.confidence, text, self.code_encoder)
            self.executed = {r["item_id"] for r in rows["executions"]}
        self.by_suggestion: dict[str, list[str]] = {}
        for item in self.estimator.items():
            self.by_suggestion.setdefault(item.suggestion_id, []).append(item.id)
        self.processed: int = store.get_state("processed_seq", 0)
        self.steps: int = store.get_state("steps", 0)
        trained: int = store.get_state("trained_seq", 0)
        newest = latest_version(checkpoints)
        if newest is None:
            torch.manual_seed(cfg.ppo.seed)
            policy = initial_policy(cfg)
            self.version = 0
        else:
            policy, info = load_checkpoint(checkpoints, newest)
            self.version = info.version
            if all(v["version"] != info.version for v in store.versions()):  # killed in between
                store.add_version(info.version, info.sha256, info.size, str(info.path), 0, {})
        self.ppo = PPOLearner(policy, cfg.ppo, cfg.trust_region)
        self.samples: list[Sample] = []
        self.waiting: dict[str, list[Feedback]] = {}
        self.last_update = time.monotonic()
        self.last_save = time.monotonic()
        self.dirty = False
        self.lock = threading.Lock()
        """Held while the estimator and the samples change (commands read under it)."""
        for _, event in self._events_between(trained, self.processed):
            if isinstance(event, Feedback):
                self._queue_sample(event)

    def _events_between(self, low: int, high: int):
        while low < high:
            batch = [(s, e) for s, e in self.store.events_after(low, 5000) if s <= high]
            if not batch:
                return
            yield from batch
            low = batch[-1][0]

    # ------------------------------------------------------------ following the store

    def _queue_sample(self, feedback: Feedback) -> Suggestion | None:
        if self.owns is not None and not self.owns(feedback.suggestion_id):
            return None  # another worker's sample
        suggestion = self.store.suggestion(feedback.suggestion_id)
        if suggestion is None:
            self.waiting.setdefault(feedback.suggestion_id, []).append(feedback)
        elif suggestion.state is not None and all(
            c.diff is not None for c in suggestion.candidates
        ):
            self.samples.append(Sample(feedback, suggestion))
            del self.samples[: -self.stream.max_samples]
        return suggestion

    def _execution(self, feedback: Feedback, suggestion: Suggestion) -> None:
        verified = execution_verifies(feedback, suggestion)
        if verified is not None and feedback.id not in self.executed:
            self.estimator.observe_execution(feedback.id, verified)
            self.executed.add(feedback.id)

    def observe(self, event: Suggestion | Feedback) -> None:
        """Take one stored event into the estimator and the pending samples."""
        if isinstance(event, Feedback):
            suggestion = self._queue_sample(event)
            self.estimator.observe(feedback_item(event, suggestion))
            self.by_suggestion.setdefault(event.suggestion_id, []).append(event.id)
            if suggestion is not None:
                self._execution(event, suggestion)
            return
        for feedback in self.waiting.pop(event.id, []):
            self._queue_sample(feedback)
        if event.evidence is not None:
            for fid in self.by_suggestion.get(event.id, []):
                stored = self.store.event(fid)
                if isinstance(stored, Feedback):
                    self._execution(stored, event)
        self.samples = [
            Sample(s.feedback, event)
            if s.suggestion.id == event.id and s.suggestion.revision < event.revision
            else s
            for s in self.samples
        ]

    def take_events(self, limit: int = 2000) -> int:
        """Observe up to ``limit`` newly stored events; how many."""
        events = self.store.events_after(self.processed, limit)
        with self.lock:
            for seq, event in events:
                self.observe(event)
                self.processed = seq
            if events:
                self.dirty = True
        return len(events)

    def step(self) -> StepResult:
        """Process newly stored events and run an update when one is due."""
        self.apply_forgets()
        events = self.take_events()
        now = time.monotonic()
        waited = now - self.last_update
        due = waited >= self.stream.update_min_interval_s and (
            len(self.samples) >= self.stream.update_every
            or (
                len(self.samples) >= self.stream.min_samples
                and waited >= self.stream.update_seconds
            )
        )
        announcement = None
        if due:
            announcement = self.update()
        if announcement is None and self.dirty and now - self.last_save >= self.stream.save_every_s:
            self.save()
        return StepResult(events > 0, announcement)

    # ------------------------------------------------------------ learning

    def reward_inputs(self, sample: Sample) -> tuple[float | None, float]:
        """(theta_hat, human signal h) of one sample (eq. 14): the similarity of a comment or
        correction to the chosen action is the cosine of their code embeddings."""
        fb, sg = sample.feedback, sample.suggestion
        similarity = None
        if fb.kind in ("comment", "edit"):
            chosen = (
                candidate_text(
                    sg.candidates[sg.chosen - 1].title, sg.candidates[sg.chosen - 1].diff
                )
                if sg.chosen > 0
                else sg.state or ""
            )
            content = feedback_content(feedback_item(fb, sg))
            emb = self.code_encoder.encode([content, chosen])
            similarity = cosine_similarity(emb[0], emb[1])
        try:
            theta = self.estimator.confidence(fb.id)
        except KeyError:
            theta = None
        return theta, human_signal(fb.kind, fb.score, similarity)

    def update(self) -> dict[str, Any] | None:
        """One PPO update over the pending samples, then checkpoint, record and save."""
        samples, inputs, trained = self.take_samples()
        if not samples:
            return None
        diagnostics = self.ppo.update(self.rollout(samples, inputs))
        return self.publish(len(samples), trained, diagnostics)

    def take_samples(self) -> tuple[list[Sample], list[tuple[float | None, float]], int]:
        """The pending samples (now no longer pending), their reward inputs, and the stream
        position they cover."""
        with self.lock:
            samples, self.samples = self.samples, []
            trained = self.processed
            inputs = [self.reward_inputs(s) for s in samples]
        self.last_update = time.monotonic()
        return samples, inputs, trained

    def rollout(
        self, samples: list[Sample], inputs: list[tuple[float | None, float]]
    ) -> RolloutBuffer:
        """The samples as one-step episodes with shaped rewards (``steps`` numbers them, eq. 15)
        and the values of the policy as it is now."""
        states = [s.suggestion.state or "" for s in samples]
        candidates = [
            [candidate_text(c.title, c.diff) for c in s.suggestion.candidates] for s in samples
        ]
        controller = self.ppo.controller
        rewards = []
        for s, (theta, h) in zip(samples, inputs, strict=True):
            rewards.append(controller.reward(s.suggestion.r_env or 0.0, self.steps, theta, h))
            self.steps += 1
        with torch.no_grad():
            self.ppo.policy.eval()
            values = self.ppo.policy(states, candidates).values.cpu().tolist()
        return self.ppo.transitions_from(
            states,
            candidates,
            [s.suggestion.chosen for s in samples],
            [s.suggestion.old_log_prob for s in samples],
            values,
            rewards,
            [True] * len(samples),
            [theta for theta, _ in inputs],
        )

    def publish(self, samples: int, trained: int, diagnostics: dict[str, float]) -> dict[str, Any]:
        """Checkpoint the policy as the next version, save the estimator (``trained`` the stream
        position the update covered) and record the version: its announcement."""
        self.version += 1
        info = save_checkpoint(self.ppo.policy, self.checkpoints, self.version)
        with self.lock:  # the estimator first: once the version shows, its state is saved too
            self._save_locked(trained_seq=trained)
            self.store.add_version(
                self.version, info.sha256, info.size, str(info.path), samples, diagnostics
            )
        log.info(
            "published policy v%d (%d samples, sha256 %s)", self.version, samples, info.sha256[:12]
        )
        return {"version": self.version, "sha256": info.sha256, "size": info.size}

    def save(self, **extra: Any) -> None:
        """Save the estimator and the position in the event stream (one transaction), with
        ``extra`` state values (e.g. ``trained_seq``)."""
        with self.lock:
            self._save_locked(**extra)

    def _save_locked(self, **extra: Any) -> None:
        self.store.save_estimator(
            estimator_to_rows(self.estimator),
            processed_seq=self.processed,
            steps=self.steps,
            **extra,
        )
        self.dirty = False
        self.last_save = time.monotonic()

    def apply_forgets(self) -> None:
        """Apply forget requests queued in the store (``trustfix forget`` while running)."""
        requests = self.store.pending_forgets()
        if requests:
            self.forget(requests)

    def follow(self, should_stop: Callable[[], bool], wait: Callable[[float], Any]) -> None:
        """Step until ``should_stop()`` or ``stream.stop_after_updates`` updates, waiting with
        ``wait(seconds)`` when idle; then save and close the store."""
        limit = self.stream.stop_after_updates
        while not should_stop() and not (limit and self.ppo.updates >= limit):
            try:
                result = self.step()
            except Exception:  # a bad update must not end learning; it is logged and retried
                log.exception("learning step failed")
                result = StepResult(False, None)
                wait(1.0)
            if not result.worked and result.announcement is None:
                wait(0.05)
        self.save()
        self.store.close()

    def forget(self, requests: list[tuple[int, str]]) -> None:
        """Apply these ``(id, reviewer)`` forget requests and mark them applied."""
        with self.lock:
            for _, reviewer in requests:
                self.store.delete_reviewer(reviewer)
                self.estimator.forget_reviewer(reviewer)
                self.samples = [s for s in self.samples if s.feedback.reviewer != reviewer]
                remaining = {i.id for i in self.estimator.items()}
                self.by_suggestion = {
                    k: [f for f in v if f in remaining] for k, v in self.by_suggestion.items()
                }
                self.executed &= remaining
            self._save_locked()
            self.store.mark_forgotten([i for i, _ in requests])


def end_with_parent(parent_alive: Any) -> None:
    """Exit this process (:data:`ORPHAN_EXIT`) as soon as ``parent_alive``, the read end of a
    pipe whose write end only the parent holds, reads end-of-file: the parent is gone."""

    def watch() -> None:
        try:
            parent_alive.recv()
        except (EOFError, OSError):
            pass
        log.error("the trainer daemon is gone; the learning process ends")
        os._exit(ORPHAN_EXIT)

    threading.Thread(target=watch, name="trustfix-parent-watch", daemon=True).start()


def run_learner(
    store_path: Path,
    checkpoints: Path,
    cfg: TrustfixConfig,
    stream: StreamConfig,
    torch_threads: int,
    stopping: Any,
    ready: Any,
    parent_alive: Any,
    log_level: int,
    learner_class: type = Learner,
) -> None:
    """The learning process: follow the store with a ``learner_class`` (:class:`Learner`, or
    worker 0's learner under ``torchrun``) until ``stopping`` is set or
    ``stream.stop_after_updates`` updates are done; it ends at once when the daemon dies
    (:func:`end_with_parent`)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    end_with_parent(parent_alive)
    for sig in (signal.SIGTERM, signal.SIGINT):  # sent to the whole group (Ctrl-C, torchrun): the
        signal.signal(sig, signal.SIG_IGN)  # daemon stops it, and it saves first
    os.nice(stream.learner_nice)
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    try:
        store = TrainerStore(store_path, stream.synchronous)
        learner = learner_class(store, checkpoints, cfg, stream)
    except Exception as error:  # reported to the parent, which refuses to start
        ready.send(f"{type(error).__name__}: {error}")
        raise
    ready.send("ready")
    learner.follow(stopping.is_set, stopping.wait)
