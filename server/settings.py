"""Settings of ``trustfix serve``, from defaults, ``initializationOptions`` and
``workspace/didChangeConfiguration`` (``{"settings": {"trustfix": {...}}}``)."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .privacy import TELEMETRY_LEVELS, Telemetry, default_data_dir
from .repairs import CandidateBudget

log = logging.getLogger(__name__)

ROLES = ("developer", "student", "instructor")


@dataclass(frozen=True)
class ServerSettings:
    """Everything the language server can be told; each field documented with its default."""

    top_k: int = 3
    """Refinements offered per code-action request (client option ``topK``, 1-20)."""
    reviewer_id: str = ""
    """Who reviews (``reviewerId``); empty: the login name. Stored only as a keyed pseudonym."""
    role: str = "developer"
    """Reviewer role (``role``): developer, student or instructor."""
    telemetry: Telemetry = "all"
    """``off`` records nothing, ``noCode`` no source text (features and ids only), ``all``."""
    trainer_endpoint: str = ""
    """ZeroMQ endpoint of the trainer (``trainerEndpoint``); empty: offline, the outbox keeps all."""
    trainer_publish_endpoint: str = ""
    """The trainer's PUB endpoint announcing policy versions (``trainerPublishEndpoint``); empty:
    the trainer endpoint's port + 1 (``trustfix train``'s defaults are 5555 and 5556)."""
    keys_dir: Path | None = None
    """CURVE keys folder from ``trustfix keys`` (``keysDir``); required off loopback."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Outbox, reviewer key and checkpoints live here (``dataDir``; env ``TRUSTFIX_DATA_DIR``)."""
    checkpoint_dir: Path | None = None
    """Policy checkpoints (``checkpointDir``); None: ``data_dir/checkpoints``."""
    checkpoint_poll_s: float = 5.0
    """How often (seconds, at most) the checkpoint folder is checked for a newer version."""
    offer_expiry_s: float = 300.0
    """An offer neither accepted nor rejected this long is recorded as a weak ``ignore``."""
    offer_keep_s: float = 600.0
    """A finished offer (accepted and tracked, rejected, ignored) stays this long for late ratings
    and comments, then is dropped."""
    max_offers: int = 600
    """Offers kept at most (each holds its document's text); beyond, the oldest are dropped, the
    unanswered ones as ``expired``."""
    edit_checkpoints: tuple[float, ...] = (30.0, 120.0, 600.0)
    """Seconds after an accept when what survives of it is reported as an ``edit``."""
    comment_quiet_s: float = 2.0
    """An inline ``# trustfix: ...`` comment is recorded once it has been unchanged this long."""
    debounce_s: float = 0.3
    """Quiet time after didOpen/didChange before diagnostics are recomputed."""
    max_document_chars: int = 300_000
    """Larger documents get no actions, diagnostics or hover (an empty answer at once): every
    candidate is a whole-file text, so analysing one unit costs time in proportion to the file
    (about 10 s a unit for 990 KB on a loaded 2-core machine)."""
    max_unit_lines: int = 1000
    """Functions longer than this get no actions."""
    max_candidates: int = 48
    """Candidates ranked per unit, chosen by ``candidate_budget``: bounds proposing and ranking
    latency (``python -m trustfix.bench.bench_candidates --cap N`` measures proposing)."""
    candidate_budget: CandidateBudget = field(default_factory=CandidateBudget)
    """How the ``max_candidates`` slots are shared: per-proposer and per-family quotas, lines of
    a failing trace and near the cursor first (``propose(..., budget=...)``)."""
    max_diagnostic_units: int = 200
    """Units ranked for diagnostics per document (the first ones)."""
    outbox_max_rows: int = 200_000
    """Events kept at most while no trainer acks them (oldest dropped beyond, with a warning)."""
    test_command: str = ""
    """Command run in the workspace after an accepted change (``testCommand``); empty: pytest on
    the workspace's test files that import the changed module, when there are any."""
    test_timeout_s: float = 60.0
    """Wall-clock limit of one test run."""
    max_message_bytes: int = 64 * 2**20
    """Largest JSON-RPC message body read (``Content-Length``); a larger one is refused unread
    (never allocated) and the stream resynchronised at the next header."""
    max_header_bytes: int = 8192
    """Longest header block of one message; longer is refused as malformed."""
    read_chunk_bytes: int = 65536
    """Bytes read from the client at a time."""
    large_document_chars: int = 100_000
    """Documents at least this long are analysed in their own thread, so they never hold up
    code actions on smaller documents."""
    large_document_wait_s: float = 5.0
    """Longest a large document's analysis job waits for the small documents' ones to finish
    before it starts anyway (so a stream of small requests cannot starve it)."""
    max_unit_depth: int = 100
    """Functions whose syntax tree nests deeper get no refinements (Python's own parser stops
    near 200 nested brackets; the operators recurse over the tree)."""
    max_unit_nodes: int = 20_000
    """Functions with more syntax nodes than this get no refinements (bounds analysis time)."""
    verify_candidates: int = 5
    """Most probable candidates of a unit run against the workspace's tests in the sandbox
    before they are offered (``verifyCandidates``; 0: no verification)."""
    verify_budget_s: float = 20.0
    """Seconds one unit's verification may take; candidates not started by then stay unverified."""
    near_cursor_margin: float = 0.1
    """Log-probability difference under which two candidates count as near-equal, so the one
    touching the cursor's line (or a failing test's) is offered first (``nearCursorMargin``; 0:
    the policy's order)."""

    @property
    def publish_endpoint(self) -> str:
        """The trainer's PUB endpoint in use."""
        if self.trainer_publish_endpoint or not self.trainer_endpoint:
            return self.trainer_publish_endpoint
        base, _, port = self.trainer_endpoint.rpartition(":")
        return f"{base}:{int(port) + 1}"

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder in use."""
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @property
    def reviewer(self) -> str:
        """The reviewer's display id (the login name when none was given)."""
        return self.reviewer_id or os.environ.get("USER") or "anonymous"


_CLIENT_NAMES = {
    "topK": "top_k",
    "reviewerId": "reviewer_id",
    "role": "role",
    "telemetry": "telemetry",
    "trainerEndpoint": "trainer_endpoint",
    "trainerPublishEndpoint": "trainer_publish_endpoint",
    "keysDir": "keys_dir",
    "checkpointPoll": "checkpoint_poll_s",
    "dataDir": "data_dir",
    "checkpointDir": "checkpoint_dir",
    "offerExpiry": "offer_expiry_s",
    "editCheckpoints": "edit_checkpoints",
    "commentQuiet": "comment_quiet_s",
    "debounce": "debounce_s",
    "testCommand": "test_command",
    "testTimeout": "test_timeout_s",
    "outboxMaxRows": "outbox_max_rows",
    "verifyCandidates": "verify_candidates",
    "verifyBudget": "verify_budget_s",
    "nearCursorMargin": "near_cursor_margin",
}
"""Client option name -> field name (the client's camelCase names)."""


def _convert(name: str, value: Any) -> Any:
    """A client value for field ``name``, converted and checked (ValueError when unusable)."""
    if name == "top_k":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            raise ValueError("topK must be an integer 1-20")
        return value
    if name == "role":
        if value not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return value
    if name == "telemetry":
        if value not in TELEMETRY_LEVELS:
            raise ValueError(f"telemetry must be one of {', '.join(TELEMETRY_LEVELS)}")
        return value
    if name in ("data_dir", "checkpoint_dir", "keys_dir"):
        return Path(str(value)).expanduser()
    if name == "edit_checkpoints":
        times = tuple(float(v) for v in value)
        if not times or any(t <= 0 for t in times):
            raise ValueError("editCheckpoints must be positive seconds")
        return tuple(sorted(times))
    if name in (
        "offer_expiry_s",
        "comment_quiet_s",
        "debounce_s",
        "test_timeout_s",
        "checkpoint_poll_s",
        "verify_budget_s",
        "near_cursor_margin",
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
        return float(value)
    if name == "outbox_max_rows":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("outboxMaxRows must be a positive integer")
        return value
    if name == "verify_candidates":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
            raise ValueError("verifyCandidates must be an integer 0-20")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def merge_options(settings: ServerSettings, options: Any) -> tuple[ServerSettings, list[str]]:
    """``settings`` updated from client ``options`` (camelCase keys); empty strings and None mean
    "keep the default".  Unknown keys are ignored; invalid values are skipped and described in the
    returned list of problems."""
    if not isinstance(options, dict):
        return settings, [] if options is None else ["options must be an object"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in options.items():
        name = _CLIENT_NAMES.get(key)
        if name is None or value is None or value == "":
            continue
        try:
            changes[name] = _convert(name, value)
        except (TypeError, ValueError) as error:
            problems.append(f"{key}: {error}")
    return dataclasses.replace(settings, **changes), problems
