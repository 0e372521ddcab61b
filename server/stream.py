"""The server's side of the feedback stream: the outbox drains to the trainer, policies come back.

* :class:`OutboxSender` (a thread with a DEALER): sends the oldest outbox events in batches
  (see :mod:`trustfix.trainer.wire`), up to ``window`` batches in flight, deletes a batch's ids
  once the trainer has acked it (after its commit), and resends unacked batches after
  ``ack_timeout_s``, doubling the wait up to ``backoff_max_s`` while the trainer stays away.
  The trainer stores ids idempotently, so a batch that was committed but whose ack was lost is
  harmless to resend.  On the same connection it asks, now and then, for its own reviewer's
  trust (the editor shows it).
* :class:`PolicySubscriber` (a thread with a SUB and a DEALER): on each announcement of a newer
  version it fetches the checkpoint's JSON and weights in chunks, checks size and sha256, writes
  them into the checkpoint folder (weights first, JSON last, each by atomic rename, so the
  language server's :class:`~trustfix.server.session.PolicyHost` sees a complete version or
  none), loads it with ``load_checkpoint(..., expected_sha256=...)`` and hands it to
  ``on_policy``; every announcement also goes to ``on_announcement`` (the language server asks
  for its trust then).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgspec
import zmq
from trustfix.trainer.config import StreamConfig
from trustfix.trainer.events import EventError, decode_event, encode_batch
from trustfix.trainer.wire import (
    ACK,
    BATCH,
    CHUNK,
    ERROR,
    META,
    POLICY_TOPIC,
    PROTOCOL,
    TRUST,
    check_endpoint,
    curve_client,
)

from .outbox import Outbox

log = logging.getLogger(__name__)


def connect_socket(
    context: zmq.Context, kind: int, endpoint: str, keys: Path | None, key_name: str
) -> zmq.Socket:
    """A socket of ``kind`` connected to the trainer at ``endpoint``: no linger, a CURVE client
    with key pair ``key_name`` when ``keys`` is set, and IMMEDIATE (nothing is queued for a
    connection not yet made, so sending to an absent trainer fails at once)."""
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IMMEDIATE, 1)
    curve_client(socket, keys, key_name)
    socket.connect(endpoint)
    return socket


@dataclass
class _Batch:
    """A batch in flight: its outbox keys and bodies, and when it was sent."""

    keys: list[str]
    bodies: list[bytes]
    sent: float


class BackgroundThread:
    """A daemon thread running the subclass's ``_run`` until ``stopping`` is set (start with
    :meth:`start`)."""

    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Set ``stopping`` and wait up to ``timeout`` seconds for the thread to end."""
        self.stopping.set()
        self._thread.join(timeout)


class OutboxSender(BackgroundThread):
    """Drains an :class:`Outbox` to the trainer at ``endpoint`` (start with :meth:`start`).

    With ``reviewer`` (the session's pseudonymous id) it also asks the trainer for that
    reviewer's trust after acks and on :meth:`request_trust`, at most every
    ``stream.trust_every_s``, over the same connection that delivers the reviewer's events (the
    only one the trainer answers; see :mod:`trustfix.trainer.wire`), and hands each answer,
    ``{alpha, beta, theta, count}`` or None, to ``on_trust`` (in the sender's thread)."""

    def __init__(
        self,
        outbox: Outbox,
        endpoint: str,
        stream: StreamConfig | None = None,
        keys: Path | None = None,
        key_name: str = "server",
        reviewer: str | None = None,
        on_trust: Callable[[dict[str, float] | None], None] | None = None,
    ) -> None:
        check_endpoint(endpoint, keys, "connect to")
        self.outbox, self.endpoint = outbox, endpoint
        self.stream = stream or StreamConfig()
        self.keys, self.key_name = keys, key_name
        self.reviewer, self.on_trust = reviewer, on_trust
        super().__init__("trustfix-outbox")
        self.sent = 0
        """Events sent (resends included)."""
        self.acked = 0
        """Events deleted from the outbox after an ack."""
        self.resends = 0
        self.dropped = 0
        """Events dropped because the trainer can never take them (too large, or unreadable)."""
        self.last_error: str | None = None
        self.trust: dict[str, float] | None = None
        """The reviewer's trust as the trainer last reported it."""
        self._byte_budget = self.stream.batch_bytes
        self._trust_wanted = threading.Event()
        self._trust_asked = -float("inf")

    def request_trust(self) -> None:
        """Ask for the reviewer's trust soon (rate-limited; from any thread)."""
        self._trust_wanted.set()

    def _socket(self, context: zmq.Context) -> zmq.Socket:
        return connect_socket(context, zmq.DEALER, self.endpoint, self.keys, self.key_name)

    def _read(self, after: int) -> tuple[list[str], list[bytes], int]:
        """The oldest outbox rows past ``seq`` ``after`` that fit in one batch (at least one),
        as stored (validated when they were added): keys, bodies and the last ``seq``.  While
        batches are in flight ``after`` is the last one's end, and the rows past it are the
        new ones (a row added meanwhile gets a seq above every stored row's)."""
        keys, bodies, size, last = [], [], 0, after
        for seq, key, body in self.outbox.pending_raw(after, self.stream.batch_events):
            if bodies and size + len(body) > self._byte_budget:
                break
            keys.append(key)
            bodies.append(body)
            size += len(body)
            last = seq
        return keys, bodies, last

    def _ask_trust(self, socket: zmq.Socket) -> None:
        """Send the trust request when one is wanted and the last is ``trust_every_s`` old."""
        now = time.monotonic()
        if (
            self.reviewer is None
            or not self._trust_wanted.is_set()
            or now - self._trust_asked < self.stream.trust_every_s
        ):
            return
        try:
            socket.send_multipart([PROTOCOL, TRUST, self.reviewer.encode()], zmq.NOBLOCK)
        except zmq.Again:  # not connected: tried again on the next round
            return
        self._trust_wanted.clear()
        self._trust_asked = now

    def _run(self) -> None:
        context = zmq.Context()
        socket = self._socket(context)
        wait = self.stream.ack_timeout_s
        inflight: dict[bytes, _Batch] = {}
        cursor = 0
        try:
            while not self.stopping.is_set():
                self._ask_trust(socket)
                if len(inflight) < self.stream.window:
                    keys, bodies, last = self._read(cursor if inflight else 0)
                    if keys:
                        batch_id = uuid.uuid4().hex.encode()
                        try:
                            socket.send_multipart(
                                [PROTOCOL, BATCH, batch_id, encode_batch(bodies)], zmq.NOBLOCK
                            )
                        except zmq.Again:  # not connected (IMMEDIATE): wait and try again
                            self.stopping.wait(min(wait, self.stream.idle_poll_s))
                            continue
                        self.sent += len(bodies)
                        inflight[batch_id] = _Batch(keys, bodies, time.monotonic())
                        cursor = last
                        continue
                if not inflight:  # idle: wait for new events, answering replies meanwhile
                    if socket.poll(int(self.stream.idle_poll_s * 1000)):
                        self._on_reply(socket.recv_multipart(), inflight)
                    continue
                oldest = min(batch.sent for batch in inflight.values())
                left = oldest + wait - time.monotonic()
                if left > 0 and socket.poll(int(min(left, 0.1) * 1000) + 1):
                    self._on_reply(socket.recv_multipart(), inflight)
                    wait = self.stream.ack_timeout_s
                elif left <= 0:
                    self.resends += 1
                    log.info("no ack within %.1f s; resending %d batch(es)", wait, len(inflight))
                    wait = min(wait * 2, self.stream.backoff_max_s)
                    inflight.clear()
                    # a new socket drops whatever the old one still queued for a dead peer
                    socket.close(0)
                    socket = self._socket(context)
        finally:
            socket.close(0)
            context.term()

    def _on_reply(self, frames: list[bytes], inflight: dict[bytes, _Batch]) -> None:
        """Take the trust answer; delete an acked batch's events from the outbox; log a refused
        batch (it is resent), dropping what the trainer can never take."""
        if len(frames) == 4 and frames[:3] == [PROTOCOL, TRUST, (self.reviewer or "").encode()]:
            self.trust = msgspec.json.decode(frames[3])
            if self.on_trust is not None:
                self.on_trust(self.trust)
            return
        if len(frames) < 4 or frames[0] != PROTOCOL or frames[2] not in inflight:
            return  # a stale reply to a batch already resent
        batch = inflight.pop(frames[2])
        if frames[1] == ACK:
            report = msgspec.json.decode(frames[3])
            for index, reason in report["rejected"].items():
                log.warning("trainer rejected event %s: %s", batch.keys[int(index)], reason)
            self.acked += self.outbox.ack(batch.keys)
            self._trust_wanted.set()
            return
        self.last_error = frames[3].decode(errors="replace")
        size = sum(map(len, batch.bodies))
        if self.last_error.startswith("oversized") and len(batch.keys) == 1:
            log.error(
                "event %s (%d bytes) is larger than the trainer accepts; dropped",
                batch.keys[0],
                size,
            )
            self.dropped += self.outbox.ack(batch.keys)
        elif self.last_error.startswith("oversized"):
            self._byte_budget = max(1, size // 2)  # smaller batches from now on
        elif self.last_error.startswith("malformed") and (
            unreadable := [
                k for k, b in zip(batch.keys, batch.bodies, strict=True) if not _readable(b)
            ]
        ):
            log.error("outbox rows %s no longer hold valid events; dropped", unreadable)
            self.dropped += self.outbox.ack(unreadable)
        else:
            log.error("trainer refused a batch: %s", self.last_error)
            self.stopping.wait(self.stream.ack_timeout_s)


def _readable(body: bytes) -> bool:
    """Whether an outbox row still decodes as a valid event (a damaged one spoils its batch)."""
    try:
        decode_event(body)
    except EventError:
        return False
    return True


class PolicyFetchError(RuntimeError):
    """A published version could not be fetched or did not match its announcement."""


def fetch_policy(
    socket: zmq.Socket, announcement: dict[str, Any], folder: Path, timeout: float = 10.0
) -> Path:
    """Fetch one announced version over ``socket`` (a connected DEALER) into ``folder``; the
    weights' size and sha256 are checked before the version's JSON is written.  Returns the JSON."""
    version = str(int(announcement["version"])).encode()

    def ask(*frames: bytes) -> list[bytes]:
        if not socket.poll(int(timeout * 1000), zmq.POLLOUT):
            raise PolicyFetchError("the trainer is not reachable")
        socket.send_multipart([PROTOCOL, *frames], zmq.NOBLOCK)
        if not socket.poll(int(timeout * 1000)):
            raise PolicyFetchError(f"no answer from the trainer within {timeout} s")
        reply = socket.recv_multipart()
        if reply[1] == ERROR:
            raise PolicyFetchError(reply[-1].decode(errors="replace"))
        return reply

    record_bytes = ask(META, version)[3]
    record = json.loads(record_bytes)
    if record["sha256"] != announcement["sha256"]:
        raise PolicyFetchError(
            f"v{int(version)}: announced sha256 {announcement['sha256']} but the "
            f"record says {record['sha256']}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / record["weights"]
    tmp = weights.with_suffix(".part")
    digest = hashlib.sha256()
    with tmp.open("wb") as fh:
        offset = 0
        while offset < int(announcement["size"]):
            data = ask(CHUNK, version, str(offset).encode())[4]
            if not data:
                break
            fh.write(data)
            digest.update(data)
            offset += len(data)
    if offset != int(announcement["size"]) or digest.hexdigest() != announcement["sha256"]:
        tmp.unlink(missing_ok=True)
        raise PolicyFetchError(
            f"v{int(version)}: fetched {offset} bytes with sha256 "
            f"{digest.hexdigest()}, announced {announcement['size']} / "
            f"{announcement['sha256']}"
        )
    os.replace(tmp, weights)
    meta = folder / f"policy-v{int(version)}.json"
    tmp_meta = meta.with_suffix(".json.part")
    tmp_meta.write_bytes(record_bytes)
    os.replace(tmp_meta, meta)
    return meta


class PolicySubscriber(BackgroundThread):
    """Follows the trainer's announcements and installs each newer version (a thread)."""

    def __init__(
        self,
        pub_endpoint: str,
        endpoint: str,
        folder: Path,
        on_policy: Callable[[Any, Any], None] | None = None,
        keys: Path | None = None,
        key_name: str = "server",
        on_announcement: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        check_endpoint(pub_endpoint, keys, "connect to")
        check_endpoint(endpoint, keys, "connect to")
        self.pub_endpoint, self.endpoint, self.folder = pub_endpoint, endpoint, folder
        self.on_policy, self.on_announcement = on_policy, on_announcement
        self.keys, self.key_name = keys, key_name
        self.version: int | None = None
        """The newest version in ``folder`` (read in the thread: the policies module loads torch)."""
        self.policy: Any = None
        self.errors: list[str] = []
        super().__init__("trustfix-policy")

    def _run(self) -> None:
        from trustfix.trainer.policies import latest_version

        self.version = latest_version(self.folder)
        context = zmq.Context()
        sub = connect_socket(context, zmq.SUB, self.pub_endpoint, self.keys, self.key_name)
        sub.setsockopt(zmq.SUBSCRIBE, POLICY_TOPIC)
        fetch = self._fetch_socket(context)
        try:
            while not self.stopping.is_set():
                if not sub.poll(100):
                    continue
                frames = sub.recv_multipart()
                if len(frames) != 3 or frames[1] != PROTOCOL:
                    log.warning("ignored a malformed announcement")
                    continue
                announcement = msgspec.json.decode(frames[2])
                if self.on_announcement is not None:
                    self.on_announcement(announcement)
                if self.version is not None and announcement["version"] <= self.version:
                    continue
                if not self._install(fetch, announcement):
                    fetch.close(0)  # a late reply to a failed fetch must not answer the next one
                    fetch = self._fetch_socket(context)
        finally:
            sub.close(0)
            fetch.close(0)
            context.term()

    def _fetch_socket(self, context: zmq.Context) -> zmq.Socket:
        return connect_socket(context, zmq.DEALER, self.endpoint, self.keys, self.key_name)

    def _install(self, fetch: zmq.Socket, announcement: dict[str, Any]) -> bool:
        """Fetch, verify and load one version; False (logged, kept in ``errors``) if that failed."""
        from trustfix.trainer.policies import CheckpointError, load_checkpoint

        try:
            fetch_policy(fetch, announcement, self.folder)
            policy, info = load_checkpoint(
                self.folder, announcement["version"], expected_sha256=announcement["sha256"]
            )
        except (PolicyFetchError, CheckpointError, OSError, ValueError, KeyError) as error:
            self.errors.append(str(error))
            log.warning("policy v%s not installed: %s", announcement.get("version"), error)
            return False
        self.policy, self.version = (
            policy,
            info.version,
        )  # one assignment each: readers see old or new
        log.info("policy v%d installed from the trainer", info.version)
        if self.on_policy is not None:
            self.on_policy(policy, info)
        return True
