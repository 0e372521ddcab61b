"""Distributed training: ``torchrun --nproc-per-node N -m trustfix.trainer ...`` (DESIGN.md, "The
method": each worker keeps its own confidence increments and all-reduces them every K steps; the
policy through DDP).

Roles.  Worker 0 (``RANK`` 0) is the trainer daemon as on one machine: it owns the ZeroMQ
sockets, the store and the checkpoints, and its learning process is the learner of worker 0.
Workers 1..N-1 run only a learner (:func:`run_worker`), each with a store of its own,
``STORE.rank<r>.sqlite`` beside the store path (on its own volume in Kubernetes), holding its
shard of the events and its estimator state.

Sharding.  Feedback is split by a stable hash of its suggestion id (:func:`shard_of`), so a
suggestion and every item about it land on one worker and the consistency checks between them
(eq. 7-9) stay local; items related only by code location on different workers are not compared.

Events travel from worker 0 by ``scatter`` of msgspec bytes in uint8 tensors (:class:`Tick`), not
through a shared file: workers need no access to the store's volume (separate pods), SQLite is
never shared over a network file system, and each worker receives only its shard.  A worker writes
what it receives into its own store before it learns from it, so a restart of any worker resumes
(worker 0 resends from its last saved position; stored ids are idempotent).

Lockstep.  Every collective call must be made by every worker in the same order, so the learner
loop is synchronous: each step, worker 0 broadcasts a header (stop, event and forget counts,
payload sizes) and scatters the payloads; then all workers ``all_gather`` their pending sample
counts, dirty flags and worker 0's clocks, and so reach the same decisions on updating, saving
and exchanging.  No worker waits on a decision another worker made alone.

Confidence.  Each worker's estimator applies its own increments (eq. 7-8, execution evidence)
and accumulates per reviewer (Δalpha, Δbeta, items) since the last exchange.  Every
``sync_every`` (K) steps that brought events, and before each update and save and at the end,
the workers exchange them (:func:`exchange_increments`): the reviewer ids (which differ per
worker) are gathered as encoded bytes, one float64 tensor [reviewers, 3] over their sorted union
is all-reduced, and each worker adds the others' share to its reviewers' Betas.  After a forget
request the exchange is ``full`` (totals rather than increments), which removes the forgotten
reviewer's influence everywhere.  f_phi and each reviewer's smoothing buffer M stay per worker.

Policy.  The PPO update runs under ``DistributedDataParallel`` (:class:`DistributedPPOLearner`):
every worker makes the same number of minibatch steps (as many as the largest shard needs), each
minibatch loss weighted by its share of the samples of that step across workers so that the
averaged gradient is the gradient of the mean over all samples; a worker with no samples steps
with a zero-weighted stand-in.  The parameters start equal (DDP broadcasts worker 0's) and stay
equal; worker 0 checkpoints and publishes.  The reward schedule (eq. 15) numbers samples across
workers, worker by worker.

Restart with the same number of workers: the estimator state is sharded, and a learner refuses a
store built by another number.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .confidence import ConfidenceEstimator
from .config import DistributedConfig, PPOConfig, StreamConfig, TrustfixConfig, TrustRegionConfig
from .events import decode_event
from .learner import Learner
from .policies.base import Policy
from .ppo import PPOLearner, RolloutBuffer, resolve_device
from .store import TrainerStore, hold_store_lock

log = logging.getLogger(__name__)


def world_size() -> int:
    """Workers in this run (``WORLD_SIZE``, set by torchrun; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This worker's number (``RANK``, set by torchrun; 0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def shard_of(suggestion_id: str, workers: int) -> int:
    """The worker that learns from a suggestion and all feedback on it (a stable hash)."""
    digest = hashlib.blake2b(suggestion_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers


def worker_store_path(store: Path, worker: int) -> Path:
    """Worker ``worker``'s own store beside ``store``: ``store.sqlite`` -> ``store.rank1.sqlite``."""
    return store.with_name(f"{store.stem}.rank{worker}{store.suffix}")


def parameter_digest(module: nn.Module) -> str:
    """sha256 over the module's parameters in order (equal digests: equal parameters)."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Tick(msgspec.Struct, array_like=True):
    """What worker 0 hands one worker per step: its shard's new events (stored bodies) and
    every reviewer to forget."""

    events: list[bytes]
    forgets: list[str]


class Collectives:
    """The process group of this run and the few collectives the trainer uses; bytes travel as
    uint8 tensors (never pickled objects)."""

    def __init__(self, cfg: DistributedConfig, ppo: PPOConfig) -> None:
        self.rank, self.world = rank(), world_size()
        on_gpu = resolve_device(ppo.device).type == "cuda"
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if on_gpu else "gloo")
        if on_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout_s))
        log.info("worker %d of %d joined (%s)", self.rank, self.world, backend)

    def ints(self, values: Sequence[int]) -> torch.Tensor:
        """An int64 tensor on the collectives' device."""
        return torch.tensor(list(values), dtype=torch.int64, device=self.device)

    def broadcast(self, tensor: torch.Tensor) -> list[int]:
        """Worker 0's ``tensor`` everywhere (in place), as a list."""
        dist.broadcast(tensor, 0)
        return tensor.tolist()

    def all_gather_ints(self, values: Sequence[int]) -> list[list[int]]:
        """Every worker's ``values`` (same length everywhere), by worker."""
        mine = self.ints(values)
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine)
        return [t.tolist() for t in out]

    def gather_bytes(self, payload: bytes) -> list[bytes]:
        """Every worker's ``payload``, by worker: all_gather of the lengths, then of the
        payloads padded to the longest."""
        lengths = [n for (n,) in self.all_gather_ints([len(payload)])]
        size = max(lengths)
        if size == 0:
            return [b""] * self.world
        out = [torch.empty(size, dtype=torch.uint8, device=self.device) for _ in range(self.world)]
        dist.all_gather(out, self._padded(payload, size))
        return [bytes(t[:n].cpu().numpy()) for t, n in zip(out, lengths, strict=True)]

    def scatter_bytes(self, payloads: list[bytes] | None, lengths: Sequence[int]) -> bytes:
        """Worker 0's ``payloads[r]`` to each worker r (``lengths`` known to all)."""
        size = max(lengths)
        if size == 0:
            return b""
        buffer = torch.empty(size, dtype=torch.uint8, device=self.device)
        chunks = None if payloads is None else [self._padded(p, size) for p in payloads]
        dist.scatter(buffer, chunks, src=0)
        return bytes(buffer[: lengths[self.rank]].cpu().numpy())

    def _padded(self, payload: bytes, size: int) -> torch.Tensor:
        tensor = torch.zeros(size, dtype=torch.uint8, device=self.device)
        if payload:
            tensor[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
        return tensor


def exchange_increments(
    estimator: ConfidenceEstimator, group: Collectives, full: bool = False
) -> int:
    """Add every other worker's reviewer increments since the last exchange (``full``: their
    totals) to ``estimator``; all workers call it together.  Returns the reviewers exchanged."""
    own = estimator.increments(full)
    names = group.gather_bytes(msgspec.msgpack.encode(sorted(own)))
    union = sorted(set().union(*(msgspec.msgpack.decode(b, type=list[str]) for b in names if b)))
    totals: dict[str, tuple[float, float, int]] = {}
    if union:
        index = {name: i for i, name in enumerate(union)}
        values = torch.zeros(len(union), 3, dtype=torch.float64)
        for name, increment in own.items():
            values[index[name]] = torch.tensor(increment, dtype=torch.float64)
        values = values.to(group.device)
        dist.all_reduce(values)
        totals = {
            name: (a, b, round(n))
            for name, (a, b, n) in zip(union, values.cpu().tolist(), strict=True)
        }
    estimator.add_increments(totals, own, full)
    return len(union)


class _ActionEvaluator(nn.Module):
    """The policy's ``evaluate_actions`` as a ``forward``, for DDP to wrap."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, states: Sequence[str], candidates: Sequence[list[str]], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.policy.evaluate_actions(states, candidates, actions)


class DistributedPPOLearner(PPOLearner):
    """:class:`PPOLearner` whose gradients are averaged over the workers by DDP; every worker
    runs the same number of minibatch steps, weighted by its share of each step's samples."""

    def __init__(
        self, policy: Policy, ppo: PPOConfig, trust_region: TrustRegionConfig, group: Collectives
    ) -> None:
        super().__init__(policy, ppo, trust_region)
        self.group = group
        device_ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_ActionEvaluator(self.policy), device_ids=device_ids)
        self.counts: list[int] = []

    def update_shards(self, buffer: RolloutBuffer, counts: list[int]) -> dict[str, float]:
        """The update over every worker's ``buffer`` (``counts``: each worker's size; all call
        it together).  A worker with none steps with a zero-weighted stand-in sample and reports
        nan diagnostics."""
        self.counts = counts
        if len(buffer):
            return self.update(buffer)
        stand_in = self.transitions_from([""], [[""]], [0], [0.0], [0.0], [0.0], [True], [None])
        diagnostics = self.update(stand_in)
        return {
            k: v if k == "update" else (0.0 if k == "samples" else math.nan)
            for k, v in diagnostics.items()
        }

    def minibatches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """As many minibatches as the largest shard needs (``minibatch_size`` at most); the
        loss of worker r's j-th is weighted ``b_rj * workers / sum_r b_rj`` so that DDP's mean
        of the gradients is the gradient of the mean over all the step's samples."""
        m = max(math.ceil(c / self.cfg.minibatch_size) for c in self.counts)
        sizes = [[c // m + (1 if j < c % m else 0) for j in range(m)] for c in self.counts]
        start = 0
        for j in range(m):
            mine = sizes[self.group.rank][j]
            if mine:
                yield (
                    order[start : start + mine],
                    mine * self.group.world / sum(s[j] for s in sizes),
                )
                start += mine
            else:
                yield order[:1], 0.0

    def evaluate(
        self, states: Sequence[str], candidates: Sequence[list[str]], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.ddp(states, candidates, actions)


class DistributedLearner:
    """The learner of one worker (see the module docstring): a :class:`Learner` that owns this
    worker's shard of the suggestions, stepped in lockstep with the other workers; worker 0's
    follows the shared store and hands the other shards out, the others follow their own
    stores."""

    def __init__(
        self, store: TrainerStore, checkpoints: Path, cfg: TrustfixConfig, stream: StreamConfig
    ) -> None:
        self.group = Collectives(cfg.distributed, cfg.ppo)
        self.rank, self.world_size = self.group.rank, self.group.world
        self.cfg, self.stream = cfg, stream
        self.learner = learner = Learner(
            store,
            checkpoints,
            cfg,
            stream,
            world_size=self.world_size,
            owns=lambda suggestion_id: shard_of(suggestion_id, self.world_size) == self.rank,
        )
        learner.version, learner.steps = self.group.broadcast(
            self.group.ints([learner.version, learner.steps])
        )
        learner.ppo = DistributedPPOLearner(
            learner.ppo.policy, cfg.ppo, cfg.trust_region, self.group
        )
        self.ticks = 0
        """Steps that brought events to any worker (K counts these)."""

    def follow(self, should_stop: Callable[[], bool], wait: Callable[[float], Any]) -> None:
        """Step in lockstep with the other workers until worker 0 stops (``should_stop()`` or
        ``stream.stop_after_updates``); then exchange, save and close the store."""
        learner, limit = self.learner, self.stream.stop_after_updates
        while True:
            stop = self.rank == 0 and (
                should_stop() or bool(limit and learner.ppo.updates >= limit)
            )
            busy = self.tick(stop)
            if busy is None:
                break
            if not busy and self.rank == 0:
                wait(0.05)
        exchange_increments(learner.estimator, self.group)
        learner.save()
        learner.store.set_state(policy_parameters=parameter_digest(learner.ppo.policy))
        learner.store.close()
        dist.destroy_process_group()

    def tick(self, stop: bool) -> bool | None:
        """One lockstep step: events and forgets handed out, then update, save and exchange
        decided together.  Whether anything happened; None once worker 0 said stop."""
        group, store = self.group, self.learner.store
        rows: list[tuple[int, str, bytes]] = []
        requests: list[tuple[int, str]] = []
        payloads: list[bytes] | None = None
        header = group.ints([0] * (3 + group.world))
        if self.rank == 0:
            if not stop:
                requests = store.pending_forgets()
                rows = store.raw_events_after(
                    self.learner.processed, self.cfg.distributed.tick_events
                )
            forgets = [reviewer for _, reviewer in requests]
            shards: list[list[bytes]] = [[] for _ in range(group.world)]
            for _, suggestion_id, body in rows:
                shards[shard_of(suggestion_id, group.world)].append(body)
            payloads = [b""] + [
                msgspec.msgpack.encode(Tick(shards[r], forgets)) if shards[r] or forgets else b""
                for r in range(1, group.world)
            ]
            header = group.ints([int(stop), len(rows), len(forgets), *map(len, payloads)])
        stop_flag, events, forgot, *lengths = group.broadcast(header)
        if stop_flag:
            return None
        payload = group.scatter_bytes(payloads, lengths)
        if self.rank == 0:
            self._take_own(rows, requests)
        else:
            self._take_shard(payload)
        advanced = bool(events or forgot)
        self.ticks += advanced
        return self._decide(advanced, bool(forgot)) or advanced

    def _take_own(
        self, rows: list[tuple[int, str, bytes]], requests: list[tuple[int, str]]
    ) -> None:
        """Worker 0: forget, then observe its own shard of ``rows`` and move past all of them."""
        learner = self.learner
        if requests:
            learner.forget(requests)
        if not rows:
            return
        with learner.lock:
            for seq, suggestion_id, body in rows:
                if shard_of(suggestion_id, self.world_size) == 0:
                    learner.observe(decode_event(body))
                learner.processed = seq
            learner.dirty = True

    def _take_shard(self, payload: bytes) -> None:
        """Workers 1..: store the handed-out events (committed first), forget, then learn."""
        if not payload:
            return
        learner = self.learner
        tick = msgspec.msgpack.decode(payload, type=Tick)
        for reviewer in tick.forgets:
            learner.store.request_forget(reviewer)
        learner.apply_forgets()
        if tick.events:
            learner.store.add_batch([(decode_event(body), body) for body in tick.events])
            learner.take_events(len(tick.events))

    def _decide(self, advanced: bool, forgot: bool) -> bool:
        """Update, save and exchange, decided alike on every worker from one all_gather of
        (pending samples, dirty, worker 0's ms since update and since save); ``advanced``: this
        step brought events or forgets.  Whether it updated."""
        learner, now = self.learner, time.monotonic()
        shared = self.group.all_gather_ints(
            [
                len(learner.samples),
                int(learner.dirty),
                int((now - learner.last_update) * 1000),
                int((now - learner.last_save) * 1000),
            ]
        )
        counts = [row[0] for row in shared]
        waited, since_save = shared[0][2] / 1000, shared[0][3] / 1000
        total, stream = sum(counts), self.stream
        due = waited >= stream.update_min_interval_s and (
            total >= stream.update_every
            or (total >= stream.min_samples and waited >= stream.update_seconds)
        )
        save = not due and any(row[1] for row in shared) and since_save >= stream.save_every_s
        exchange = (
            forgot
            or due
            or save
            or (advanced and self.ticks % self.cfg.distributed.sync_every == 0)
        )
        if exchange and exchange_increments(learner.estimator, self.group, full=forgot):
            learner.dirty = True
        if due:
            self._update_shards(counts)
        elif save:
            learner.save()
        return due

    def _update_shards(self, counts: list[int]) -> None:
        """The DDP update over every worker's pending samples; worker 0 publishes."""
        learner = self.learner
        samples, inputs, trained = learner.take_samples()
        first = learner.steps
        learner.steps = first + sum(counts[: self.rank])  # samples numbered across workers (eq. 15)
        buffer = learner.rollout(samples, inputs) if samples else RolloutBuffer()
        learner.steps = first + sum(counts)
        diagnostics = learner.ppo.update_shards(buffer, counts)
        if self.rank == 0:
            learner.publish(
                sum(counts), trained, {**diagnostics, "workers": float(self.world_size)}
            )
        else:
            learner.version += 1
            learner.save(trained_seq=trained)
        learner.store.set_state(
            policy_parameters=parameter_digest(learner.ppo.policy), policy_version=learner.version
        )


def run_worker(
    store: Path, checkpoints: Path, cfg: TrustfixConfig, stream: StreamConfig, torch_threads: int
) -> None:
    """A worker other than 0 (``trustfix train`` under torchrun with ``RANK`` > 0): its learner
    on ``STORE.rank<r>.sqlite`` until worker 0 stops.  It only reads ``checkpoints`` at start,
    if it can see them; DDP gives it worker 0's weights either way.  SIGTERM and SIGINT are
    noted and left to worker 0 (torchrun signals every worker; worker 0's stop reaches the
    others in lockstep)."""
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    path = worker_store_path(store, rank())
    with hold_store_lock(path):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: log.info("worker %d stops when worker 0 does", rank()))
        learner = DistributedLearner(
            TrainerStore(path, stream.synchronous), checkpoints, cfg, stream
        )
        learner.follow(lambda: False, time.sleep)
