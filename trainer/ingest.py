"""``trustfix train``: the headless trainer daemon behind every language server, its ingest side.

The thread that calls :meth:`TrainerDaemon.serve_forever` owns a ROUTER: it receives batches
(see :mod:`trustfix.trainer.wire`), validates each event, writes the batch in one transaction
and acks it only after the commit; anything malformed, truncated, oversized, of another version
or from an unauthenticated peer is rejected with a reason and counted, never fatal.  The same
socket serves published weights in chunks, and a reviewer's saved confidence to the connection
that delivered that reviewer's events.  A PUB socket announces each version the learning
process (:mod:`trustfix.trainer.learner`, a child process sharing only the store and the
checkpoint folder) records.  Ingest never waits for learning (nor for Python's GIL held by it).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from .config import StreamConfig, TrustfixConfig
from .events import EventError, Suggestion, decode_batch
from .learner import Learner, run_learner
from .rejects import RejectTally
from .store import DISCONNECTED, TrainerStore, hold_store_lock
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

_AUTH_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_BATCH_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
"""A batch frame's elements, undecoded: counted before any is validated."""
SQLITE_MAX_INT = 2**63 - 1
"""Largest revision the store's INTEGER column holds; the schema allows any non-negative one."""
_FRAMES = {META: 1, CHUNK: 2, TRUST: 1}
"""Frames after the kind that a weights or trust request has: version; version, offset; reviewer."""


def learner_class() -> type:
    """:class:`~trustfix.trainer.learner.Learner`, or worker 0's distributed learner under
    ``torchrun`` (``WORLD_SIZE`` > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .distributed import DistributedLearner

        return DistributedLearner
    return Learner


def ack_report(
    stored: int, duplicates: int, rejected: dict[int, tuple[str, str]], listed: int
) -> dict[str, Any]:
    """An ack's JSON: events stored and already stored, the first ``listed`` rejected events by
    index (``reason: detail``), and every rejected event counted by reason (so a reply stays
    small however many elements a batch held)."""
    by_reason: dict[str, int] = {}
    for reason, _ in rejected.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return {
        "stored": stored,
        "duplicates": duplicates,
        "rejected": {
            i: f"{reason}: {detail}" for i, (reason, detail) in list(rejected.items())[:listed]
        },
        "rejected_total": len(rejected),
        "rejected_by_reason": by_reason,
    }


class TrainerDaemon:
    """The ROUTER (ingest and weights) and the PUB (announcements) in this process's thread that
    calls :meth:`serve_forever`; learning in a child process (:func:`run_learner`) that shares
    only the store and the checkpoint folder, so neither waits for the other."""

    def __init__(
        self,
        store_path: Path,
        checkpoints: Path,
        endpoint: str,
        pub_endpoint: str,
        cfg: TrustfixConfig | None = None,
        stream: StreamConfig | None = None,
        keys: Path | None = None,
        torch_threads: int = 1,
    ) -> None:
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
        self.monitor = self.router.get_monitor_socket(_AUTH_EVENTS | zmq.EVENT_DISCONNECTED)
        self.rejects = RejectTally(
            self.store, self.stream.reject_flush_s, self.stream.reject_log_every_s
        )
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
        parent_alive, self._alive = spawn.Pipe(duplex=False)
        """Only this process holds ``_alive``: when it dies, the learner reads end-of-file."""
        self._learner = spawn.Process(
            target=run_learner,
            name="trustfix-learner",
            daemon=True,
            args=(
                store_path,
                checkpoints,
                self.cfg,
                self.stream,
                torch_threads,
                self._learner_stop,
                send,
                parent_alive,
                logging.getLogger().getEffectiveLevel(),
                learner_class(),
            ),
        )
        self._learner.start()
        send.close()  # so that the child's death reads as end of file here
        parent_alive.close()
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
            if (
                announcement != self._announced
                or now - self._last_announce >= self.stream.announce_every_s
            ):
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
                        if self.stopping.is_set():
                            break
                        try:
                            frames = self.router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self.handle(frames)
                        except Exception as error:  # e.g. the disk is full: nothing is acked
                            log.exception("could not handle a message")
                            self._reject(
                                frames[0],
                                _tag(frames[1:]),
                                "internal",
                                f"{type(error).__name__}: {error}",
                            )
                self.rejects.flush()
                self._announce()
                if not self._learner.is_alive():
                    log.log(
                        logging.INFO if self._learner.exitcode == 0 else logging.ERROR,
                        "the learning process ended (exit code %s)",
                        self._learner.exitcode,
                    )
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
        try:
            self.rejects.flush(force=True)
        except Exception:  # e.g. the disk is full: the counts are lost, the shutdown goes on
            log.exception("could not save the reject counts")
        self._learner_stop.set()
        self._learner.join(60)
        if self._learner.is_alive():
            log.warning("the learning process did not stop; killing it")
            self._learner.kill()
        self._alive.close()
        self.router.disable_monitor()
        for socket in (self.monitor, self.router, self.pub):
            socket.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.context.term()
        self.store.close()
        self._lock_file.close()

    def _on_monitor(self) -> None:
        """Count refused handshakes (``unauthenticated``) and dropped connections
        (``disconnected``: libzmq drops a connection that sends a frame over
        ``hard_limit_bytes`` and reports it only as a disconnect, as it does a peer's close)."""
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] & _AUTH_EVENTS:
                self.rejects.add(
                    "unauthenticated", f"handshake refused ({event['event']}, {event['value']})"
                )
            elif event["event"] & zmq.EVENT_DISCONNECTED:
                self.rejects.add(
                    DISCONNECTED,
                    "a connection closed by its peer or dropped by "
                    f"ZeroMQ (e.g. a frame over {self.stream.hard_limit_bytes} bytes)",
                    logging.INFO,
                )

    def _reply(self, identity: bytes, *frames: bytes) -> None:
        try:
            self.router.send_multipart([identity, PROTOCOL, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as error:  # peer gone or its queue full: it resends
            log.debug("reply dropped: %s", error)

    def _reject(self, identity: bytes, tag: bytes, reason: str, detail: str) -> None:
        self.rejects.add(reason, detail)
        self._reply(identity, ERROR, tag, f"{reason}: {detail[:500]}".encode())

    def handle(self, frames: list[bytes]) -> None:
        """Answer one message (identity first); every failure is a counted rejection whose reply
        carries the batch (or version, or reviewer) id when the message has one."""
        identity, body = frames[0], frames[1:]
        tag = _tag(body)
        size = sum(len(f) for f in body)
        if size > self.stream.max_message_bytes:
            self._reject(
                identity, tag, "oversized", f"{size} bytes > limit {self.stream.max_message_bytes}"
            )
            return
        if len(body) < 2:
            self._reject(identity, tag, "truncated", f"{len(body)} frame(s), need at least 2")
            return
        if body[0] != PROTOCOL:
            self._reject(
                identity,
                tag,
                "protocol-version",
                f"protocol {body[0][:16]!r} not supported (expected {PROTOCOL!r})",
            )
            return
        kind, rest = body[1], body[2:]
        wanted = _FRAMES.get(kind)
        if wanted is not None and len(rest) != wanted:
            self._reject(
                identity,
                tag,
                "truncated" if len(rest) < wanted else "malformed",
                f"a {kind.decode()} request has {wanted} frame(s) after its kind, got {len(rest)}",
            )
            return
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
            self._reject(identity, tag, "malformed", str(error))

    def _batch(self, identity: bytes, rest: list[bytes]) -> None:
        if len(rest) != 2:
            reason = "truncated" if len(rest) < 2 else "malformed"
            self._reject(
                identity,
                rest[0] if rest else b"",
                reason,
                f"a batch is an id and one frame of events, got {len(rest)} frame(s)",
            )
            return
        batch_id, frame = rest
        limit = self.stream.max_batch_events
        try:
            if frame.count(b",") >= limit and len(_BATCH_ITEMS.decode(frame)) > limit:
                self._reject(
                    identity, batch_id, "oversized", f"more than {limit} elements in one batch"
                )
                return
            good, errors = decode_batch(frame)
        except (EventError, msgspec.DecodeError) as error:
            self._reject(identity, batch_id, "malformed", getattr(error, "reason", str(error)))
            return
        except RecursionError:
            self._reject(identity, batch_id, "malformed", "JSON nested too deeply")
            return
        if not good and not errors:
            self._reject(identity, batch_id, "truncated", "batch without events")
            return
        rejected = {i: (reject_reason(e.reason), e.reason) for i, e in errors.items()}
        if any(isinstance(e, Suggestion) and e.revision > SQLITE_MAX_INT for e, _ in good):
            indices = [i for i in range(len(good) + len(errors)) if i not in errors]
            keep = []
            for i, (event, raw) in zip(indices, good, strict=True):
                if isinstance(event, Suggestion) and event.revision > SQLITE_MAX_INT:
                    rejected[i] = ("invalid", f"invalid event: revision above {SQLITE_MAX_INT}")
                else:
                    keep.append((event, raw))
            good, rejected = keep, dict(sorted(rejected.items()))
        added = self.store.add_batch(good, rejected.values())
        self._note_delivered(identity, {event.reviewer for event, _ in good})
        self._reply(
            identity,
            ACK,
            batch_id,
            msgspec.json.encode(
                ack_report(added, len(good) - added, rejected, self.stream.max_reply_rejects)
            ),
        )
        if rejected:
            self.rejects.log(
                "events", f"batch {batch_id[:16]!r}: {len(rejected)} event(s) rejected"
            )

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
        reviewer = rest[0].decode()
        state = (
            self.store.reviewer_trust(reviewer)
            if reviewer in self._delivered.get(identity, ())
            else None
        )
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


def _tag(body: list[bytes]) -> bytes:
    """The id a message carries after its version and kind (a batch id, a policy version, a
    reviewer), echoed in the reply so the sender can match it; empty when there is none."""
    return body[2][:64] if len(body) > 2 else b""
