"""The language server's link to the trainer: the outbox, the stream to the trainer, the
reviewer's pseudonym and trust.

Everything here runs in one dedicated thread (``trustfix-link``), in the order it was asked for:
opening the outbox, connecting to the trainer (ZeroMQ, the event schema) and storing each event.
The event loop only builds events and hands them over, so no SQLite write, socket set-up or
import of the trainer's modules ever delays a request; :meth:`TrainerLink.close` waits for the
events already handed over, so every event is committed before the server exits.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .findings import content_hash
from .offers import MAX_TEXT, Offer
from .privacy import installation_key, pseudonym
from .session import candidate_text
from .settings import ServerSettings

if TYPE_CHECKING:
    from trustfix.trainer.events import Event, Suggestion

    from .outbox import Outbox

log = logging.getLogger(__name__)

NO_TRAINER = "no trainer connected: trust is estimated by the trainer"
SENT_TO_TRAINER = "sent to the trainer, which updates your trust as it learns from it"
TRAINER_FIELDS = (
    "trainer_endpoint",
    "trainer_publish_endpoint",
    "keys_dir",
    "data_dir",
    "reviewer",
)
"""Settings whose change reconnects to the trainer."""


class TrainerLink:
    """Outbox, trainer stream and trust of one server.

    ``on_trust(trust)`` is called from the link's threads with each new answer of the trainer
    (``{alpha, beta, theta, count}`` or None); ``on_error(message)`` when the trainer cannot be
    connected; ``on_policy()`` when a new policy version has been installed."""

    def __init__(
        self,
        on_trust: Callable[[dict[str, float] | None], None],
        on_error: Callable[[str], None],
        on_policy: Callable[[], None],
    ) -> None:
        self.settings = ServerSettings()
        self.reviewer_id = ""
        """The reviewer's pseudonym (never the id in clear)."""
        self.outbox: Outbox | None = None
        self.stream: list[Any] = []
        """The outbox sender and policy subscriber while a trainer is connected."""
        self.on_trust, self.on_error, self.on_policy = on_trust, on_error, on_policy
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-link")

    def configure(self, settings: ServerSettings, started: bool) -> None:
        """Adopt ``settings``; once ``started``, reopen the outbox or reconnect as they require."""
        old, self.settings = self.settings, settings
        self.reviewer_id = pseudonym(settings.reviewer, installation_key(settings.data_dir))
        if not started:
            return
        if old.data_dir != settings.data_dir:
            self.thread.submit(self._reopen)
        elif old.outbox_max_rows != settings.outbox_max_rows:
            self.thread.submit(self._resize)
        if any(getattr(old, f) != getattr(settings, f) for f in TRAINER_FIELDS):
            self.thread.submit(self._connect)

    def start(self) -> Future[None]:
        """Open the outbox and connect to the trainer (in the link's thread)."""

        def run() -> None:
            self._open()
            self._connect()

        return self.thread.submit(run)

    @property
    def note(self) -> str:
        """Where feedback goes: to the trainer when connected, else it waits in the outbox."""
        return SENT_TO_TRAINER if self.stream else NO_TRAINER

    def record(self, event: Event | None) -> None:
        """Store an event in the outbox (nothing when telemetry is off)."""
        if event is not None and self.settings.telemetry != "off":
            self.thread.submit(self._add, event)

    def feedback(self, offer: Offer, kind: str, **fields: Any) -> None:
        """Record one Feedback event about ``offer``."""
        from trustfix.trainer.events import Feedback, new_id, now

        if self.settings.telemetry == "off":
            return
        if self.settings.telemetry == "noCode" and kind == "edit":
            fields["diff"] = ""
        self.record(
            Feedback(
                id=new_id(),
                suggestion_id=offer.id,
                reviewer=self.reviewer_id,
                role=self.settings.role,
                kind=kind,
                time=now(),
                **fields,
            )
        )

    def suggestion_event(self, offer: Offer, rank: int) -> Suggestion | None:
        """The Suggestion event of an offer (None when telemetry is off)."""
        from trustfix.trainer.events import CandidateRecord, Evidence, Suggestion, now

        level = self.settings.telemetry
        if level == "off":
            return None
        ranking = offer.ranking
        code = level == "all"
        records = [
            CandidateRecord(
                c.title,
                c.proposer,
                c.diff if code else None,
                max(1, c.line),
                content_hash(candidate_text(c)),
                min(0.0, ranking.log_probs[i + 1]),
            )
            for i, c in enumerate(ranking.candidates)
        ]
        features = {
            "unit_lines": float(ranking.unit.end_line - ranking.unit.start_line + 1),
            "candidates": float(len(ranking.candidates)),
            "ruff_findings": float(sum(f.tool == "ruff" for f in ranking.findings)),
            "semgrep_findings": float(sum(f.tool == "semgrep" for f in ranking.findings)),
            "stop_prob": ranking.stop_prob,
            "prob": ranking.prob(offer.index),
            "rank": float(rank),
        }
        verdict, evidence = offer.verdict, None
        if verdict is not None:
            evidence = Evidence(
                verdict.command,
                verdict.passed,
                verdict.failed,
                0 if verdict.error is None else 1,
                "neutral" if verdict.error else "supports" if verdict.failed == 0 else "refutes",
                verdict.summary[:MAX_TEXT],
            )
        return Suggestion(
            id=offer.id,
            policy_version=ranking.policy_version,
            state=ranking.state if code else None,
            state_sha256=hashlib.sha256(ranking.state.encode()).hexdigest(),
            features=features,
            candidates=records,
            chosen=offer.index + 1,
            old_log_prob=min(0.0, ranking.log_probs[offer.index + 1]),
            reviewer=self.reviewer_id,
            role=self.settings.role,
            time=now(),
            r_env=verdict.r_env if verdict is not None else None,
            evidence=evidence,
        )

    def close(self) -> None:
        """Store the events handed over, stop the stream and close the outbox."""
        self.thread.shutdown(wait=True)
        self._disconnect()
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    # -- in the link's thread ---------------------------------------------------------------
    def _add(self, event: Event) -> None:
        if self.outbox is not None:
            self.outbox.add(event)

    def _open(self) -> None:
        from trustfix.trainer.config import StreamConfig

        from .outbox import Outbox

        settings = self.settings
        self.outbox = Outbox(
            settings.data_dir / "outbox.sqlite",
            settings.outbox_max_rows,
            checkpoint_every_s=StreamConfig().wal_checkpoint_s,
        )

    def _reopen(self) -> None:
        self._disconnect()
        if self.outbox is not None:
            self.outbox.close()
        self._open()

    def _resize(self) -> None:
        if self.outbox is not None:
            self.outbox.max_rows = self.settings.outbox_max_rows

    def _disconnect(self) -> None:
        for part in self.stream:
            part.stop()
        self.stream = []

    def _connect(self) -> None:
        """Stream the outbox to the trainer and follow its policy versions, when one is set."""
        from .stream import OutboxSender, PolicySubscriber

        self._disconnect()
        self.on_trust(None)
        settings = self.settings
        if not settings.trainer_endpoint or self.outbox is None:
            return
        try:
            sender = OutboxSender(
                self.outbox,
                settings.trainer_endpoint,
                keys=settings.keys_dir,
                reviewer=self.reviewer_id,
                on_trust=self.on_trust,
            )
            self.stream = [
                sender.start(),
                PolicySubscriber(
                    settings.publish_endpoint,
                    settings.trainer_endpoint,
                    settings.checkpoints,
                    keys=settings.keys_dir,
                    on_policy=lambda _policy, _info: self.on_policy(),
                    on_announcement=lambda _: sender.request_trust(),
                ).start(),
            ]
        except (ValueError, RuntimeError, OSError) as error:
            log.warning("trainer not connected: %s", error)
            self.on_error(
                f"trustfix: not connected to the trainer ({error}); feedback stays in the outbox"
            )
