"""The feedback stream's wire format and security (ZeroMQ, both ends).

Messages are multipart; the first frame is always the protocol version :data:`PROTOCOL`:

- server -> trainer ``[PROTOCOL, b"batch", batch_id, events]``: ``events`` one frame, a JSON
  array of events (see :func:`~trustfix.trainer.events.encode_batch`), validated in one call;
  the trainer answers ``[PROTOCOL, b"ack", batch_id, json]`` once the batch is committed, the
  JSON saying how many events were new, how many were duplicates and which (by index) were
  rejected and why.  Every event of an acked batch is handled: stored, already stored, or
  permanently rejected.  A frame that is not a JSON array is refused whole (``error``).
- ``[PROTOCOL, b"trust", reviewer]`` -> ``[PROTOCOL, b"trust", reviewer, json]``: the reviewer's
  confidence ``{alpha, beta, theta, count}`` as the learner last saved it, or ``null``.  Privacy
  rule: the trainer answers only on a connection that has delivered events of that reviewer
  (a server asks for its own pseudonymous reviewer, and a pseudonym is a keyed hash nobody else
  can compute); for any other id, and for a reviewer not (or no longer) known, the answer is
  the same ``null``, so a peer learns nothing about reviewers it does not speak for.
- ``[PROTOCOL, b"meta", version]`` -> ``[PROTOCOL, b"meta", version, json]`` (the checkpoint's
  JSON record) and ``[PROTOCOL, b"chunk", version, offset]`` ->
  ``[PROTOCOL, b"chunk", version, offset, bytes]``: the weights of a published policy, in chunks.
- ``[PROTOCOL, b"ping"]`` -> ``[PROTOCOL, b"pong"]`` once the trainer is serving.
- a message that cannot be handled gets ``[PROTOCOL, b"error", batch_id or b"", reason]``.
- trainer PUB -> servers ``[b"policy", PROTOCOL, json{version, sha256, size}]``.

Security: endpoints other than loopback, ``ipc://`` and ``inproc://`` need CURVE keys
(:func:`check_endpoint`); ``trustfix keys DIR`` writes the key pairs (:func:`make_keys`) and the
trainer's ZAP handler admits only the public keys in ``DIR/allowed`` (:func:`start_authenticator`).
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

PROTOCOL = b"2"
"""Version of the framing (2: a batch is one frame); any other first frame is rejected."""
BATCH, ACK, META, CHUNK, ERROR, TRUST = b"batch", b"ack", b"meta", b"chunk", b"error", b"trust"
PING, PONG = b"ping", b"pong"
POLICY_TOPIC = b"policy"
"""Topic frame of a version announcement on the PUB socket."""

TRAINER_KEY = "trainer"
"""Base name of the trainer's key pair in a keys folder (``trainer.key``, ``trainer.key_secret``)."""
SERVER_KEY = "server"
"""Base name of the first server's key pair."""
ALLOWED = "allowed"
"""Sub-folder of public keys the trainer admits."""


class InsecureEndpointError(ValueError):
    """A non-loopback endpoint was asked for without CURVE keys."""


def is_local(endpoint: str) -> bool:
    """True for ``inproc://``, ``ipc://`` and TCP on a loopback address."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("inproc", "ipc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, keys: Path | None, action: str) -> None:
    """Refuse to ``action`` (bind/connect) off loopback without a keys folder."""
    if keys is None and not is_local(endpoint):
        raise InsecureEndpointError(
            f"refusing to {action} {endpoint} without CURVE keys: traffic off this machine must be "
            "encrypted and authenticated. Run `trustfix keys DIR` and pass --keys DIR on both "
            "ends, or use a loopback address (tcp://127.0.0.1:PORT)."
        )


def make_keys(folder: Path, name: str = SERVER_KEY) -> tuple[Path, Path]:
    """Create the trainer's key pair (once) and a server pair ``name`` in ``folder``, and admit
    the server's public key (``folder/allowed/name.key``).  Returns the server's (public, secret)."""
    folder.mkdir(parents=True, exist_ok=True)
    allowed = folder / ALLOWED
    allowed.mkdir(exist_ok=True)
    if not (folder / f"{TRAINER_KEY}.key_secret").exists():
        zmq.auth.create_certificates(folder, TRAINER_KEY)
    public, secret = (Path(p) for p in zmq.auth.create_certificates(folder, name))
    (folder / f"{name}.key_secret").chmod(0o600)
    (folder / f"{TRAINER_KEY}.key_secret").chmod(0o600)
    shutil.copy(public, allowed / public.name)
    return public, secret


def _load_pair(path: Path) -> tuple[bytes, bytes]:
    if not path.is_file():
        raise FileNotFoundError(f"no key file {path}: run `trustfix keys {path.parent}`")
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key")
    return public, secret


def curve_server(socket: zmq.Socket, keys: Path | None) -> None:
    """Make ``socket`` a CURVE server with the trainer's key pair from ``keys`` (no-op if None)."""
    if keys is None:
        return
    public, secret = _load_pair(keys / f"{TRAINER_KEY}.key_secret")
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def curve_client(socket: zmq.Socket, keys: Path | None, name: str = SERVER_KEY) -> None:
    """Make ``socket`` a CURVE client with pair ``name`` and the trainer's public key."""
    if keys is None:
        return
    public, secret = _load_pair(keys / f"{name}.key_secret")
    server_public, _ = zmq.auth.load_certificate(keys / f"{TRAINER_KEY}.key")
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def start_authenticator(context: zmq.Context, keys: Path | None) -> ThreadAuthenticator | None:
    """Start a ZAP handler admitting only the public keys in ``keys/allowed`` (None: no CURVE)."""
    if keys is None:
        return None
    allowed = keys / ALLOWED
    if not allowed.is_dir():
        raise FileNotFoundError(f"no {allowed}: run `trustfix keys {keys}`")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed))
    return auth


def reject_reason(detail: str) -> str:
    """The category a rejection is counted under, from an :class:`EventError` reason."""
    if detail.startswith("schema version"):
        return "version"
    if detail.startswith("invalid event"):
        return "invalid"
    return "malformed"
