"""``trustfix train``: the headless trainer daemon behind every language server.

Two processes:

* ingest (the thread that calls :meth:`TrainerDaemon.serve_forever`): a ROUTER receives batches (see
  :mod:`trustfix.trainer.wire`), validates each event, writes the batch in one transaction and
  acks it only after the commit; anything malformed, truncated, oversized, of another version or
  from an unauthenticated peer is rejected with a reason and counted, never fatal.  The same
  socket serves published weights in chunks, and a reviewer's saved confidence to the
  connection that delivered that reviewer's events (see :mod:`trustfix.trainer.wire`).
* learning (:class:`Learner`, in a child process): follows the stored events in order, joins each Feedback with its
  Suggestion, updates the confidence estimator (agreement between items, execution evidence from
  suggestion revisions), and every ``update_every`` samples or ``update_seconds`` runs the PPO
  update with the confidence-adaptive trust region, saves a checkpoint and records the version;
  the ingest side announces (version, sha256, size) on the PUB socket.  Ingest never waits for
  learning (nor for Python's GIL held by it).

Everything the learner knows is in the store (estimator tables, ``processed_seq``,
``trained_seq``, versions, metrics) or in the checkpoint folder, so a restart resumes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import torch
import zmq
from zmq.utils.monitor import recv_monitor_message

from .confidence import ConfidenceEstimator, FeedbackItem, feedback_content
from .config import StreamConfig, TrustfixConfig
from .encoders import cosine_similarity, get_encoder
from .events import EventError, Feedback, Suggestion, candidate_text, decode_batch
from .policies import initial_policy, latest_version, load_checkpoint, save_checkpoint
from .ppo import PPOLearner, RolloutBuffer
from .store import TrainerStore
from .trust_region import TrustRegionController, human_signal
from .wire import (
    ACK,
    BATCH,
    CHUNK,
    ERROR,
    META,
    PING,
    POLICY_TOPIC,
    PONG,
    PROTOCOL,
    TRUST,
    check_endpoint,
    curve_server,
    reject_reason,
    start_authenticator,
)

log = logging.getLogger(__name__)

_AUTH_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def feedback_item(feedback: Feedback, suggestion: Suggestion | None) -> FeedbackItem:
    """The estimator's view of a Feedback event; its location is the state it was given on."""
    return FeedbackItem(
        id=feedback.id, suggestion_id=feedback.suggestion_id, reviewer=feedback.reviewer,
        role=feedback.role, kind=feedback.kind, text=feedback.text, diff=feedback.diff,
        score=feedback.score, location=suggestion.state_sha256 if suggestion else None,
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
    elif feedback.kind in ("reject", "ignore") or (feedback.kind == "score" and (feedback.score or 3) <= 2):
        positive = False
    else:
        return None
    return positive == (suggestion.evidence.verdict == "supports")


@dataclass
class Sample:
    """One training sample: a feedback item joined with the suggestion it is about."""

    feedback: Feedback
    suggestion: Suggestion


class Learner:
    """The learning process's state: estimator, policy, PPO learner, pending samples."""

    world_size = 1
    """Workers that share the feedback (one shard each); see :mod:`trustfix.trainer.distributed`."""

    def __init__(self, store: TrainerStore, checkpoints: Path, cfg: TrustfixConfig,
                 stream: StreamConfig) -> None:
        self.store, self.checkpoints, self.cfg, self.stream = store, checkpoints, cfg, stream
        text = get_encoder(cfg.encoders.text_encoder, cfg.encoders.max_length)
        self.code_encoder = get_encoder(cfg.encoders.code_encoder, cfg.encoders.max_length)
        encoders = {"text": cfg.encoders.text_encoder, "code": cfg.encoders.code_encoder,
                    "max_length": cfg.encoders.max_length}
        rows = store.load_estimator_rows()
        recorded = store.get_state("encoders")
        if rows is not None and recorded is not None and recorded != encoders:
            raise ValueError(f"the store's confidence state was built with encoders {recorded}, "
                             f"not {encoders}: run with the same [encoders] settings")
        shards = store.get_state("world_size", 1)
        if rows is not None and shards != self.world_size:
            raise ValueError(f"the store's confidence state was built by {shards} worker(s), not "
                             f"{self.world_size}: the feedback is sharded by worker, so restart "
                             "with the same number of workers")
        store.set_state(encoders=encoders, world_size=self.world_size)
        if rows is None:
            self.estimator = ConfidenceEstimator(cfg.confidence, text, self.code_encoder)
            self.executed: set[str] = set()
        else:
            self.estimator = ConfidenceEstimator.from_rows(rows, cfg.confidence, text,
                                                           self.code_encoder)
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
        suggestion = self.store.suggestion(feedback.suggestion_id)
        if suggestion is None:
            self.waiting.setdefault(feedback.suggestion_id, []).append(feedback)
        elif suggestion.state is not None and all(c.diff is not None for c in suggestion.candidates):
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
        self.samples = [Sample(s.feedback, event) if s.suggestion.id == event.id
                        and s.suggestion.revision < event.revision else s for s in self.samples]

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

    def step(self) -> tuple[bool, dict[str, Any] | None]:
        """Process newly stored events and run an update when one is due: (whether events were
        processed, the new version's announcement or None)."""
        self.apply_forgets()
        events = self.take_events()
        now = time.monotonic()
        waited = now - self.last_update
        due = waited >= self.stream.update_min_interval_s and (
            len(self.samples) >= self.stream.update_every
            or (len(self.samples) >= self.stream.min_samples
                and waited >= self.stream.update_seconds))
        announcement = None
        if due:
            announcement = self.update()
        if announcement is None and self.dirty and now - self.last_save >= self.stream.save_every_s:
            self.save()
        return events > 0, announcement

    # ------------------------------------------------------------ learning

    def reward_inputs(self, sample: Sample) -> tuple[float | None, float]:
        """(theta_hat, human signal h) of one sample (eq. 14): the similarity of a comment or
        correction to the chosen action is the cosine of their code embeddings."""
        fb, sg = sample.feedback, sample.suggestion
        similarity = None
        if fb.kind in ("comment", "edit"):
            chosen = (candidate_text(sg.candidates[sg.chosen - 1].title, sg.candidates[sg.chosen - 1].diff)
                      if sg.chosen > 0 else sg.state or "")
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

    def rollout(self, samples: list[Sample], inputs: list[tuple[float | None, float]]) -> RolloutBuffer:
        """The samples as one-step episodes with shaped rewards (``steps`` numbers them, eq. 15)
        and the values of the policy as it is now."""
        states = [s.suggestion.state or "" for s in samples]
        candidates = [[candidate_text(c.title, c.diff) for c in s.suggestion.candidates]
                      for s in samples]
        controller = self.ppo.controller
        rewards = []
        for s, (theta, signal) in zip(samples, inputs, strict=True):
            rewards.append(controller.reward(s.suggestion.r_env or 0.0, self.steps, theta, signal))
            self.steps += 1
        with torch.no_grad():
            self.ppo.policy.eval()
            values = self.ppo.policy(states, candidates).values.cpu().tolist()
        return self.ppo.transitions_from(
            states, candidates, [s.suggestion.chosen for s in samples],
            [s.suggestion.old_log_prob for s in samples], values, rewards,
            [True] * len(samples), [theta for theta, _ in inputs])

    def publish(self, samples: int, trained: int, diagnostics: dict[str, float]) -> dict[str, Any]:
        """Checkpoint the policy as the next version, save the estimator (``trained`` the stream
        position the update covered) and record the version: its announcement."""
        self.version += 1
        info = save_checkpoint(self.ppo.policy, self.checkpoints, self.version)
        with self.lock:  # the estimator first: once the version shows, its state is saved too
            self._save_locked(trained_seq=trained)
            self.store.add_version(self.version, info.sha256, info.size, str(info.path),
                                   samples, diagnostics)
        log.info("published policy v%d (%d samples, sha256 %s)", self.version, samples,
                 info.sha256[:12])
        return {"version": self.version, "sha256": info.sha256, "size": info.size}

    def save(self) -> None:
        """Save the estimator and the position in the event stream (one transaction)."""
        with self.lock:
            self._save_locked()

    def _save_locked(self, **extra: Any) -> None:
        self.store.save_estimator(self.estimator.to_rows(), processed_seq=self.processed,
                                  steps=self.steps, **extra)
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
                worked, announcement = self.step()
            except Exception:  # a bad update must not end learning; it is logged and retried
                log.exception("learning step failed")
                worked, announcement = False, None
                wait(1.0)
            if not worked and announcement is None:
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
                gone = {i.id for i in self.estimator.items()}
                self.by_suggestion = {k: [f for f in v if f in gone] for k, v in self.by_suggestion.items()}
                self.executed &= gone
            self._save_locked()
            self.store.mark_forgotten([i for i, _ in requests])


def run_learner(store_path: Path, checkpoints: Path, cfg: TrustfixConfig, stream: StreamConfig,
                torch_threads: int, stopping: Any, ready: Any, parent: int, log_level: int) -> None:
    """The learning process: follow the store until ``stopping`` is set, the parent dies or
    ``stream.stop_after_updates`` updates are done.  Under ``torchrun`` (``WORLD_SIZE`` > 1) it
    is worker 0 of :mod:`trustfix.trainer.distributed`."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for sig in (signal.SIGTERM, signal.SIGINT):  # sent to the whole group (Ctrl-C, torchrun): the
        signal.signal(sig, signal.SIG_IGN)       # daemon stops it, and it saves first
    os.nice(stream.learner_nice)
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        store = TrainerStore(store_path, stream.synchronous)
        if distributed:
            from .distributed import DistributedLearner

            learner: Learner = DistributedLearner(store, checkpoints, cfg, stream)
        else:
            learner = Learner(store, checkpoints, cfg, stream)
    except Exception as error:  # reported to the parent, which refuses to start
        ready.send(f"{type(error).__name__}: {error}")
        raise
    ready.send("ready")
    learner.follow(lambda: stopping.is_set() or os.getppid() != parent, stopping.wait)


class TrainerDaemon:
    """The ROUTER (ingest and weights) and the PUB (announcements) in this process's thread that
    calls :meth:`serve_forever`; learning in a child process (:func:`run_learner`) that shares
    only the store and the checkpoint folder, so neither waits for the other."""

    def __init__(self, store_path: Path, checkpoints: Path, endpoint: str, pub_endpoint: str,
                 cfg: TrustfixConfig | None = None, stream: StreamConfig | None = None,
                 keys: Path | None = None, torch_threads: int = 1) -> None:
        check_endpoint(endpoint, keys, "bind")
        check_endpoint(pub_endpoint, keys, "bind")
        self.cfg = cfg or TrustfixConfig()
        self.stream = stream or self.cfg.stream
        self.checkpoints = checkpoints
        self._lock_file = hold_store_lock(store_path)
        self.store = TrainerStore(store_path, self.stream.synchronous, self.stream.wal_checkpoint_s)
        self.context = zmq.Context()
        self.auth = start_authenticator(self.context, keys)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, self.stream.hard_limit_bytes)
        curve_server(self.router, keys)
        self.monitor = self.router.get_monitor_socket(_AUTH_EVENTS)
        self.endpoint = self._bind(self.router, endpoint)
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        curve_server(self.pub, keys)
        self.pub_endpoint = self._bind(self.pub, pub_endpoint)
        self.stopping = threading.Event()
        self._announced: dict[str, Any] | None = None
        self._delivered: OrderedDict[bytes, set[str]] = OrderedDict()
        """Per connection (ROUTER identity), the reviewers whose events it delivered: the only
        ones it is told the trust of (the ``stream.trust_peers`` latest connections)."""
        self._last_announce = self._last_check = 0.0
        spawn = multiprocessing.get_context("spawn")
        self._learner_stop = spawn.Event()
        receive, send = spawn.Pipe(duplex=False)
        self._learner = spawn.Process(
            target=run_learner, name="trustfix-learner", daemon=True,
            args=(store_path, checkpoints, self.cfg, self.stream, torch_threads,
                  self._learner_stop, send, os.getpid(), logging.getLogger().getEffectiveLevel()))
        self._learner.start()
        send.close()  # so that the child's death reads as end of file here
        message, deadline = "no answer within 300 s", time.monotonic() + 300
        while time.monotonic() < deadline:
            if receive.poll(0.5):
                try:
                    message = receive.recv()
                except EOFError:
                    message = f"it exited with code {self._learner.exitcode}"
                break
            if not self._learner.is_alive():
                message = f"it exited with code {self._learner.exitcode}"
                break
        receive.close()
        if message != "ready":
            self._learner.kill()
            self.close()
            raise RuntimeError(f"the learning process did not start: {message}")

    @staticmethod
    def _bind(socket: zmq.Socket, endpoint: str) -> str:
        if endpoint.endswith(":0"):
            socket.bind(endpoint[:-2] + ":*")
        else:
            socket.bind(endpoint)
        return socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _announce(self) -> None:
        """Publish a new version as soon as the learner records it, and repeat the latest one
        every ``announce_every_s`` for servers that joined late."""
        now = time.monotonic()
        if now - self._last_check < 0.1:
            return
        self._last_check = now
        for row in self.store.versions()[-1:]:
            announcement = {"version": row["version"], "sha256": row["sha256"], "size": row["size"]}
            if announcement != self._announced or now - self._last_announce >= self.stream.announce_every_s:
                self.pub.send_multipart([POLICY_TOPIC, PROTOCOL, msgspec.json.encode(announcement)])
                self._announced, self._last_announce = announcement, now

    # ------------------------------------------------------------ ingest thread

    def serve_forever(self) -> None:
        """Receive and answer until :meth:`stop`; then stop the learner and close everything."""
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                ready = dict(poller.poll(100))
                if self.monitor in ready:
                    self._on_monitor()
                if self.router in ready:
                    for _ in range(100):
                        try:
                            frames = self.router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self.handle(frames)
                        except Exception as error:  # e.g. the disk is full: nothing is acked
                            log.exception("could not handle a message")
                            self._reply(frames[0], ERROR, b"", f"internal: {error}".encode())
                self._announce()
                if not self._learner.is_alive():
                    log.log(logging.INFO if self._learner.exitcode == 0 else logging.ERROR,
                            "the learning process ended (exit code %s)", self._learner.exitcode)
                    break
        finally:
            self.stopping.set()
            self.close()

    @property
    def learner_exitcode(self) -> int | None:
        """The learning process's exit code; None while it runs."""
        return self._learner.exitcode

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (from any thread)."""
        self.stopping.set()

    def close(self) -> None:
        """Stop the learner (it saves its state), close sockets, the authenticator and the store."""
        self._learner_stop.set()
        self._learner.join(60)
        if self._learner.is_alive():
            log.warning("the learning process did not stop; killing it")
            self._learner.kill()
        self.router.disable_monitor()
        for socket in (self.monitor, self.router, self.pub):
            socket.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.context.term()
        self.store.close()
        self._lock_file.close()

    def _on_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] & _AUTH_EVENTS:
                self.store.count_reject("unauthenticated",
                                        f"handshake refused ({event['event']}, {event['value']})")
                log.warning("refused an unauthenticated peer (%s)", event["event"])

    def _reply(self, identity: bytes, *frames: bytes) -> None:
        try:
            self.router.send_multipart([identity, PROTOCOL, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as error:  # peer gone or its queue full: it resends
            log.debug("reply dropped: %s", error)

    def _reject(self, identity: bytes, tag: bytes, reason: str, detail: str) -> None:
        self.store.count_reject(reason, detail)
        log.warning("rejected a message: %s (%s)", reason, detail[:200])
        self._reply(identity, ERROR, tag, f"{reason}: {detail}".encode())

    def handle(self, frames: list[bytes]) -> None:
        """Answer one message (identity first); every failure is a counted rejection."""
        identity, body = frames[0], frames[1:]
        tag = body[2][:64] if len(body) > 2 else b""  # the batch id, echoed so the sender can match
        size = sum(len(f) for f in body)
        if size > self.stream.max_message_bytes:
            self._reject(identity, tag, "oversized",
                         f"{size} bytes > limit {self.stream.max_message_bytes}")
            return
        if len(body) < 2:
            self._reject(identity, tag, "truncated", f"{len(body)} frame(s), need at least 2")
            return
        if body[0] != PROTOCOL:
            self._reject(identity, tag, "protocol-version",
                         f"protocol {body[0][:16]!r} not supported (expected {PROTOCOL!r})")
            return
        kind, rest = body[1], body[2:]
        try:
            if kind == BATCH:
                self._batch(identity, rest)
            elif kind == META:
                self._meta(identity, rest)
            elif kind == CHUNK:
                self._chunk(identity, rest)
            elif kind == TRUST:
                self._trust(identity, rest)
            elif kind == PING:
                self._reply(identity, PONG)
            else:
                self._reject(identity, tag, "unknown-kind", f"message kind {kind[:32]!r}")
        except (ValueError, OSError) as error:
            self._reject(identity, rest[0] if rest else b"", "malformed", str(error))

    def _batch(self, identity: bytes, rest: list[bytes]) -> None:
        if len(rest) != 2:
            reason = "truncated" if len(rest) < 2 else "malformed"
            self._reject(identity, rest[0] if rest else b"", reason,
                         f"a batch is an id and one frame of events, got {len(rest)} frame(s)")
            return
        batch_id = rest[0]
        try:
            good, errors = decode_batch(rest[1])
        except EventError as error:
            self._reject(identity, batch_id, "malformed", error.reason)
            return
        if not good and not errors:
            self._reject(identity, batch_id, "truncated", "batch without events")
            return
        rejects = [(reject_reason(e.reason), e.reason) for e in errors.values()]
        added = self.store.add_batch(good, rejects)
        self._note_delivered(identity, {event.reviewer for event, _ in good})
        rejected = {i: f"{reason}: {detail}" for i, (reason, detail) in zip(errors, rejects, strict=True)}
        self._reply(identity, ACK, batch_id, msgspec.json.encode(
            {"stored": added, "duplicates": len(good) - added, "rejected": rejected}))
        if rejected:
            log.warning("batch %r: %d event(s) rejected", batch_id[:16], len(rejected))

    def _note_delivered(self, identity: bytes, reviewers: set[str]) -> None:
        """Remember that this connection delivered these reviewers' events (for :meth:`_trust`)."""
        seen = self._delivered.pop(identity, set())
        seen |= reviewers
        self._delivered[identity] = seen
        while len(self._delivered) > self.stream.trust_peers:
            self._delivered.popitem(last=False)

    def _trust(self, identity: bytes, rest: list[bytes]) -> None:
        """A reviewer's confidence, ``{alpha, beta, theta, count}`` as the learner last saved it,
        for the connection that delivered that reviewer's events; ``null`` for anyone else and
        for a reviewer the estimator does not know (the two look alike, so asking reveals
        nothing about other reviewers)."""
        if len(rest) != 1:
            raise ValueError(f"a trust request is one reviewer id, got {len(rest)} frame(s)")
        reviewer = rest[0].decode()
        state = (self.store.reviewer_trust(reviewer)
                 if reviewer in self._delivered.get(identity, ()) else None)
        self._reply(identity, TRUST, rest[0], msgspec.json.encode(state))

    def _version_paths(self, rest: list[bytes]) -> tuple[int, Path, Path]:
        version = int(rest[0])
        weights = self.checkpoints / f"policy-v{version}.safetensors"
        meta = self.checkpoints / f"policy-v{version}.json"
        if not meta.is_file():
            raise ValueError(f"no policy version {version}")
        return version, weights, meta

    def _meta(self, identity: bytes, rest: list[bytes]) -> None:
        _, _, meta = self._version_paths(rest)
        record = json.loads(meta.read_text())
        if record.get("assets_sha256"):
            raise ValueError("policies with assets are shared through a common folder, not fetched")
        self._reply(identity, META, rest[0], meta.read_bytes())

    def _chunk(self, identity: bytes, rest: list[bytes]) -> None:
        _, weights, _ = self._version_paths(rest)
        offset = int(rest[1])
        with weights.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(self.stream.chunk_bytes)
        self._reply(identity, CHUNK, rest[0], rest[1], data)


def hold_store_lock(store_path: Path) -> IO[bytes]:
    """Lock ``STORE.lock`` for this process's lifetime (the kernel drops it if the process dies);
    RuntimeError when another trainer holds it."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(store_path.with_name(store_path.name + ".lock"), "wb")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another trainer is running on {store_path}") from None
    return handle


def status(store: TrainerStore) -> dict[str, Any]:
    """Versions, queue depths and rejects by reason, from the store."""
    versions = store.versions()
    return {
        "events": store.count(),
        "suggestions": store.count("suggestion"),
        "feedback": store.count("feedback"),
        "unprocessed": store.max_seq() - store.get_state("processed_seq", 0),
        "untrained": store.max_seq() - store.get_state("trained_seq", 0),
        "versions": [{k: v for k, v in row.items() if k != "path"} for row in versions],
        "latest_version": versions[-1]["version"] if versions else None,
        "rejects": store.rejects(),
        "forget_requests_pending": len(store.pending_forgets()),
        "last_update": (store.metrics() or [None])[-1],
    }


def estimator_from_store(store: TrainerStore, cfg: TrustfixConfig) -> ConfidenceEstimator:
    """The confidence estimator as last saved (empty when nothing was saved), with the encoders
    the daemon used (recorded in the store), else those of ``cfg``."""
    names = store.get_state("encoders") or {"text": cfg.encoders.text_encoder,
                                            "code": cfg.encoders.code_encoder,
                                            "max_length": cfg.encoders.max_length}
    text = get_encoder(names["text"], names["max_length"])
    code = get_encoder(names["code"], names["max_length"])
    rows = store.load_estimator_rows()
    if rows is None:
        return ConfidenceEstimator(cfg.confidence, text, code)
    return ConfidenceEstimator.from_rows(rows, cfg.confidence, text, code)


def forget_offline(store: TrainerStore, cfg: TrustfixConfig) -> int:
    """Apply queued forget requests to the saved estimator (no trainer running); items removed."""
    requests = store.pending_forgets()
    if not requests:
        return 0
    estimator = estimator_from_store(store, cfg)
    removed = sum(estimator.forget_reviewer(reviewer) for _, reviewer in requests)
    store.save_estimator(estimator.to_rows())
    store.mark_forgotten([i for i, _ in requests])
    return removed


def explain(store: TrainerStore, cfg: TrustfixConfig, feedback_id: str) -> dict[str, Any]:
    """Why one feedback item has its weight: the estimator's account (prior, each update, alpha,
    beta, theta, theta_hat) plus the clip radius delta and gate q that theta_hat gives (eq. 10, 16)."""
    estimator = estimator_from_store(store, cfg)
    try:
        report = estimator.explain(feedback_id)
    except KeyError:
        raise KeyError(f"no feedback item {feedback_id!r} in {store.path}") from None
    control = TrustRegionController(cfg.trust_region, cfg.ppo).control(report["theta_hat"])
    return {**report, "delta": control.delta, "q": control.gate, "lambda": control.lam}


def export_reviewer(store: TrainerStore, cfg: TrustfixConfig, reviewer: str) -> dict[str, Any]:
    """Everything stored about one reviewer: their events, their Beta state, each item's account."""
    estimator = estimator_from_store(store, cfg)
    events = [msgspec.to_builtins(e) for e in store.reviewer_events(reviewer)]
    known = {i.id for i in estimator.items() if i.reviewer == reviewer}
    state = estimator.reviewers().get(reviewer)
    return {
        "reviewer": reviewer,
        "confidence": None if state is None else {
            "alpha": state.alpha, "beta": state.beta, "theta": state.theta, "items": state.count},
        "events": events,
        "items": [estimator.explain(fid) for fid in sorted(known)],
    }
