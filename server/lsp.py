"""``trustfix serve``: the language server (pygls 2).

Code actions offer the policy's top-k refinements of the function under the cursor; every offer
is a Suggestion event and everything the reviewer does with it a Feedback event, stored in the
outbox.  Requests never wait for slow work: ruff and candidate generation run in one analysis
thread, the policy in its own model thread (torch is imported there, after ``initialize`` has
been answered), semgrep and test runs in background threads with work-done progress.

The reviewer's trust is estimated by the trainer.  With a trainer configured, the outbox sender
asks it for this reviewer's (pseudonymous) trust after acks and on version announcements, at
most every ``stream.trust_every_s``, in its own thread (never while a request waits); each new
answer updates ``trust``, ``alpha`` and ``beta`` in ``trustfix.trust`` and is sent in
``trustfix/status``.  They are null until the trainer knows the reviewer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from .evidence import TestOutcome, run_command, run_pytest, test_files_importing
from .findings import SemgrepCache, content_hash
from .guards import AnalysisLanes, analyse_bounded
from .privacy import installation_key, pseudonym
from .session import (
    Offer,
    OfferBook,
    PolicyHost,
    Ranking,
    candidate_text,
    correction,
    find_unit,
    inline_comments,
    make_ranking,
    minimal_change,
    survival,
)
from .settings import ServerSettings, merge_options
from .units import Unit, unit_at, units

if TYPE_CHECKING:
    from trustfix.trainer.events import Event, Suggestion

    from .outbox import Outbox

log = logging.getLogger(__name__)

STATUS = "trustfix/status"
"""Server -> client notification: ``{policyVersion, trust, reviewer}``."""
KIND = types.CodeActionKind.RefactorRewrite
COMMANDS = ("trustfix.accept", "trustfix.reject", "trustfix.rate", "trustfix.comment",
            "trustfix.trust")
MAX_TEXT = 2000
"""Longest comment accepted (as :data:`trustfix.trainer.events.MAX_TEXT`, which is imported only
after ``initialize`` is answered: the ``trainer`` package loads torch)."""
RANKING_CACHE = 256
"""Rankings kept (by document content and unit)."""
NO_TRAINER = "no trainer connected: trust is estimated by the trainer"
SENT_TO_TRAINER = "sent to the trainer, which updates your trust as it learns from it"


class TrustfixServer(LanguageServer):
    """The language server with its settings, outbox, policy host and offers."""

    def __init__(self, settings: ServerSettings | None = None) -> None:
        super().__init__("trustfix", "0.1.0")
        self.settings = settings or ServerSettings()
        self.outbox: Outbox | None = None
        self.reviewer_id = ""
        self.policy: PolicyHost | None = None
        self.stream: list[Any] = []
        """The outbox sender and policy subscriber while a trainer is configured."""
        self.trust: dict[str, float] | None = None
        """The reviewer's ``{alpha, beta, theta, count}`` as the trainer last reported it."""
        self.analysis = AnalysisLanes(self.settings.large_document_wait_s)
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-tests")
        self.semgrep: SemgrepCache | None = None
        self.rankings: OrderedDict[tuple[Any, ...], Ranking] = OrderedDict()
        self.offers = OfferBook()
        self.refreshes: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_feedback: str | None = None
        self.fresh_said = False
        self.shut_down = False

    # -- set-up ---------------------------------------------------------------------------
    def configure(self, options: Any) -> None:
        """Apply client options (initializationOptions or the ``trustfix`` settings section)."""
        old = self.settings
        self.settings, problems = merge_options(self.settings, options)
        for problem in problems:
            log.warning("setting ignored: %s", problem)
        key = installation_key(self.settings.data_dir)
        self.reviewer_id = pseudonym(self.settings.reviewer, key)
        if self.outbox is not None:
            if old.data_dir != self.settings.data_dir:
                self.outbox.close()
                self.outbox = None
                self.open_outbox()
            else:
                self.outbox.max_rows = self.settings.outbox_max_rows
            trainer = ("trainer_endpoint", "trainer_publish_endpoint", "keys_dir", "data_dir",
                       "reviewer")
            if any(getattr(old, f) != getattr(self.settings, f) for f in trainer):
                self.connect_trainer()

    def open_outbox(self) -> None:
        """Open the outbox in the data folder (after ``initialize``: it loads the event schema)."""
        from trustfix.trainer.config import StreamConfig

        from .outbox import Outbox

        self.outbox = Outbox(self.settings.data_dir / "outbox.sqlite",
                             self.settings.outbox_max_rows,
                             checkpoint_every_s=StreamConfig().wal_checkpoint_s)

    def start_background(self) -> None:
        """Start the policy load and the timer (after ``initialized``)."""
        self.loop = asyncio.get_running_loop()
        self.open_outbox()
        self.semgrep = SemgrepCache()
        self.policy = PolicyHost(self.settings.checkpoints, self.settings.checkpoint_poll_s,
                                 on_change=self._policy_changed)
        self.policy.start()
        self.connect_trainer()
        self.spawn(self.tick())

    @property
    def trainer_note(self) -> str:
        """Where feedback goes: to the trainer when connected, else it waits in the outbox."""
        return SENT_TO_TRAINER if self.stream else NO_TRAINER

    def connect_trainer(self) -> None:
        """Stream the outbox to the trainer and follow its policy versions, when one is set."""
        from .stream import OutboxSender, PolicySubscriber

        for part in self.stream:
            part.stop()
        self.stream = []
        self.trust = None
        settings = self.settings
        if not settings.trainer_endpoint or self.outbox is None:
            return
        try:
            sender = OutboxSender(self.outbox, settings.trainer_endpoint, keys=settings.keys_dir,
                                  reviewer=self.reviewer_id, on_trust=self._trust_reported)
            self.stream = [
                sender.start(),
                PolicySubscriber(settings.publish_endpoint, settings.trainer_endpoint,
                                 settings.checkpoints, keys=settings.keys_dir,
                                 on_announcement=lambda _: sender.request_trust()).start(),
            ]
        except (ValueError, RuntimeError, OSError) as error:
            log.warning("trainer not connected: %s", error)
            self.window_show_message(types.ShowMessageParams(
                type=types.MessageType.Warning,
                message=f"trustfix: not connected to the trainer ({error}); feedback stays in "
                        "the outbox"))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that is kept alive until it finishes."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _policy_changed(self, version: int | None, fresh: bool) -> None:
        """Called in the model thread: tell the client (once, for a fresh policy)."""
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self._announce_policy, fresh)

    def _announce_policy(self, fresh: bool) -> None:
        if fresh and not self.fresh_said:
            self.fresh_said = True
            self.window_log_message(types.LogMessageParams(
                type=types.MessageType.Info,
                message=f"trustfix: no policy checkpoint in {self.settings.checkpoints}; "
                        "ranking with a fresh, untrained policy",
            ))
        self.send_status()

    def _trust_reported(self, trust: dict[str, float] | None) -> None:
        """Called in the sender's thread with the trainer's answer: a change goes to the client."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._set_trust, trust)

    def _set_trust(self, trust: dict[str, float] | None) -> None:
        if trust != self.trust:
            self.trust = trust
            self.send_status()

    def send_status(self) -> None:
        """Send ``trustfix/status``."""
        version = self.policy.version if self.policy else None
        self.protocol.notify(STATUS, {"policyVersion": version,
                                      "trust": self.trust["theta"] if self.trust else None,
                                      "reviewer": self.settings.reviewer})

    def close(self) -> None:
        """Stop the threads and close the outbox."""
        for task in list(self.tasks) + list(self.refreshes.values()):
            task.cancel()
        if self.policy:
            self.policy.close()
        for part in self.stream:
            part.stop()
        self.analysis.shutdown(wait=False, cancel_futures=True)
        self.background.shutdown(wait=False, cancel_futures=True)
        if self.outbox:
            self.outbox.close()
            self.outbox = None

    # -- documents ------------------------------------------------------------------------
    def python_document(self, uri: str) -> TextDocument | None:
        """The open Python document at ``uri`` when trustfix handles it, else None (closed, not
        Python, too large or binary)."""
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            return None
        is_python = doc.language_id == "python" or uri.endswith((".py", ".pyi"))
        source = doc.source
        if not is_python or len(source) > self.settings.max_document_chars or "\x00" in source:
            return None
        return doc

    def unit_at_position(self, doc: TextDocument, position: types.Position) -> Unit | None:
        """The unit under a client position, or None (outside any unit, out of range, too long)."""
        lines = doc.lines
        if position.line >= len(lines):
            return None
        column = len(lines[position.line].encode("utf-16-le")[: 2 * position.character]
                     .decode("utf-16-le", errors="ignore"))
        unit = unit_at(doc.source, position.line + 1, column)
        if unit is None or unit.end_line - unit.start_line >= self.settings.max_unit_lines:
            return None
        return unit

    # -- ranking --------------------------------------------------------------------------
    async def rank(self, doc: TextDocument, unit: Unit) -> Ranking:
        """The policy's ranking of ``unit``'s candidates (cached by content and policy)."""
        source = doc.source
        semgrep_ready = self.semgrep is not None and self.semgrep.get(source) is not None
        key = (content_hash(source), unit.start_byte, unit.end_byte, semgrep_ready)
        cached = self.rankings.get(key)
        if cached is not None and cached.policy_version == self.policy.version:
            self.rankings.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        filename = Path(to_fs_path(doc.uri) or "unit.py").name
        analysed = await loop.run_in_executor(
            self.analysis.lane(source, self.settings),
            partial(analyse_bounded, self.settings, source, unit, filename, self.semgrep),
        )
        ranked = None
        if analysed[1]:
            texts = [candidate_text(c) for c in analysed[1]]
            ranked = await asyncio.wrap_future(self.policy.rank(analysed[2], texts))
        ranking = make_ranking(unit, analysed, ranked)
        self.rankings[key] = ranking
        while len(self.rankings) > RANKING_CACHE:
            self.rankings.popitem(last=False)
        return ranking

    def make_offers(self, doc: TextDocument, ranking: Ranking) -> list[Offer]:
        """The top-k offers of a ranking, each recorded once as a Suggestion."""
        key = (doc.uri, content_hash(doc.source), ranking.unit.start_byte, ranking.policy_version,
               self.settings.top_k)
        known = self.offers.by_request.get(key)
        if known is not None and all(o.status == "offered" for o in known):
            return known
        offers = [Offer(uuid4().hex, doc.uri, doc.source, ranking, index)
                  for index in ranking.order[: self.settings.top_k]]
        for rank, offer in enumerate(offers):
            offer.event = self.suggestion_event(offer, rank)
            self.record(offer.event)
        self.offers.add(key, offers)
        return offers

    def suggestion_event(self, offer: Offer, rank: int) -> Suggestion | None:
        """The Suggestion event of an offer (None when telemetry is off)."""
        from trustfix.trainer.events import CandidateRecord, Suggestion, now

        level = self.settings.telemetry
        if level == "off":
            return None
        ranking = offer.ranking
        code = level == "all"
        records = [
            CandidateRecord(c.title, c.proposer, c.diff if code else None, max(1, c.line),
                            content_hash(candidate_text(c)), min(0.0, ranking.log_probs[i + 1]))
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
        return Suggestion(
            id=offer.id, policy_version=ranking.policy_version,
            state=ranking.state if code else None,
            state_sha256=hashlib.sha256(ranking.state.encode()).hexdigest(),
            features=features, candidates=records, chosen=offer.index + 1,
            old_log_prob=min(0.0, ranking.log_probs[offer.index + 1]),
            reviewer=self.reviewer_id, role=self.settings.role, time=now(),
        )

    def record(self, event: Event | None) -> None:
        """Store an event in the outbox (nothing when telemetry is off)."""
        if event is not None and self.settings.telemetry != "off" and self.outbox is not None:
            self.outbox.add(event)

    def feedback(self, offer: Offer, kind: str, **fields: Any) -> None:
        """Record one Feedback event about ``offer``."""
        from trustfix.trainer.events import Feedback, new_id, now

        if self.settings.telemetry == "off":
            return
        if self.settings.telemetry == "noCode" and kind == "edit":
            fields["diff"] = ""
        self.record(Feedback(id=new_id(), suggestion_id=offer.id, reviewer=self.reviewer_id,
                             role=self.settings.role, kind=kind, time=now(), **fields))

    # -- edits ----------------------------------------------------------------------------
    def workspace_edit(self, offer: Offer) -> types.WorkspaceEdit:
        """The offer's change as a WorkspaceEdit against the document's current version."""
        doc = self.workspace.text_documents.get(offer.uri)
        if doc is None or doc.source != offer.source:
            raise JsonRpcInvalidParams("the document changed since this refinement was offered; "
                                       "ask for code actions again")
        first, last, text, end_col = minimal_change(offer.source, offer.candidate.source)
        edit = types.TextEdit(
            range=types.Range(types.Position(first, 0), types.Position(last, end_col)),
            new_text=text,
        )
        caps = self.client_capabilities.workspace
        if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
            return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(doc.uri, doc.version),
                edits=[edit],
            )])
        return types.WorkspaceEdit(changes={doc.uri: [edit]})

    def client_resolves_edit(self) -> bool:
        """Whether the client fills in ``edit`` through ``codeAction/resolve``."""
        text = self.client_capabilities.text_document
        action = text.code_action if text else None
        support = action.resolve_support if action else None
        return bool(support and "edit" in support.properties and action.data_support)

    def client_has_literals(self) -> bool:
        """Whether the client accepts CodeAction literals (else only Commands)."""
        text = self.client_capabilities.text_document
        action = text.code_action if text else None
        return bool(action and action.code_action_literal_support)

    def action(self, offer: Offer) -> types.CodeAction | types.Command:
        """The code action (or, for old clients, the command) of one offer."""
        title = f"trustfix: {offer.title} (p={offer.ranking.prob(offer.index):.2f})"
        command = types.Command(title=title, command="trustfix.accept", arguments=[offer.id])
        if not self.client_has_literals():
            return command
        action = types.CodeAction(title=title, kind=KIND, command=command,
                                  data={"suggestionId": offer.id})
        if not self.client_resolves_edit():
            action.edit = self.workspace_edit(offer)
        return action

    def offer_from(self, args: tuple[Any, ...], types_: tuple[type, ...]) -> Offer:
        """The offer named by a command's first argument; checks the argument count and types."""
        if len(args) != len(types_):
            raise JsonRpcInvalidParams(f"expected {len(types_)} argument(s), got {len(args)}")
        for i, (value, kind) in enumerate(zip(args, types_, strict=True)):
            if not isinstance(value, kind) or isinstance(value, bool):
                raise JsonRpcInvalidParams(f"argument {i + 1} must be a {kind.__name__}")
        offer = self.offers.get(args[0])
        if offer is None:
            raise JsonRpcInvalidParams(f"unknown suggestion id {args[0]!r}")
        return offer

    # -- background work --------------------------------------------------------------------
    async def progress(self, title: str, awaitable: Any) -> Any:
        """Await ``awaitable`` inside work-done progress (when the client supports it)."""
        window = self.client_capabilities.window
        token = None
        if window and window.work_done_progress:
            token = f"trustfix-{uuid4().hex}"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title))
            except Exception as error:  # noqa: BLE001 - a client may refuse progress
                log.debug("no progress for %s: %s", title, error)
                token = None
        try:
            return await awaitable
        finally:
            if token is not None:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd())

    def schedule_refresh(self, uri: str) -> None:
        """Recompute ``uri``'s diagnostics after the debounce time (cancelling a pending one)."""
        pending = self.refreshes.pop(uri, None)
        if pending is not None:
            pending.cancel()
        self.refreshes[uri] = asyncio.ensure_future(self.refresh(uri))

    async def refresh(self, uri: str) -> None:
        """Publish hint diagnostics where the policy has a refinement; start semgrep."""
        await asyncio.sleep(self.settings.debounce_s)
        doc = self.python_document(uri)
        if doc is None:
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, []))
            return
        source, version = doc.source, doc.version
        if self.semgrep is not None and self.semgrep.get(source) is None:
            self.spawn(self.scan(uri, source))
        found: list[types.Diagnostic] = []
        try:
            for unit in units(source)[: self.settings.max_diagnostic_units]:
                if unit.end_line - unit.start_line >= self.settings.max_unit_lines:
                    continue
                ranking = await self.rank(doc, unit)
                if doc.source != source:
                    return
                found.extend(diagnostics_for(ranking))
        except Exception:
            log.exception("diagnostics for %s failed", uri)
            return
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri, found, version=version))

    async def scan(self, uri: str, source: str) -> None:
        """semgrep on ``source`` in the background; diagnostics again once it is done."""
        try:
            await self.progress("trustfix: semgrep",
                                asyncio.wrap_future(self.semgrep.submit(source)))
        except Exception as error:  # noqa: BLE001 - semgrep is optional
            log.warning("semgrep failed: %s", error)
            return
        doc = self.workspace.text_documents.get(uri)
        if doc is not None and doc.source == source:
            self.schedule_refresh(uri)

    async def gather_evidence(self, offer: Offer) -> None:
        """Run the workspace's tests after an accepted change and record the outcome."""
        import msgspec
        from trustfix.trainer.events import Evidence

        root = self.workspace.root_path
        doc = self.workspace.text_documents.get(offer.uri)
        path = to_fs_path(offer.uri)
        if not root or doc is None or path is None or offer.event is None:
            return
        loop = asyncio.get_running_loop()
        settings = self.settings
        if settings.test_command:
            job = partial(run_command, settings.test_command, Path(root), settings.test_timeout_s)
        else:
            tests = await loop.run_in_executor(
                self.background, test_files_importing, Path(root), Path(path).stem)
            if not tests:
                return
            job = partial(run_pytest, Path(root), Path(path), doc.source, tests,
                          settings.test_timeout_s)
        outcome: TestOutcome = await self.progress(
            "trustfix: running tests", loop.run_in_executor(self.background, job))
        verdict = "supports" if outcome.failed == 0 and outcome.passed > 0 else "refutes"
        evidence = Evidence(outcome.command, outcome.passed, outcome.failed, outcome.exit_code,
                            verdict, outcome.summary)
        offer.event = msgspec.structs.replace(offer.event, revision=offer.event.revision + 1,
                                              r_env=outcome.r_env, evidence=evidence)
        self.record(offer.event)
        self.last_feedback = (
            f'tests after your acceptance of "{offer.title}": {outcome.passed} passed, '
            f"{outcome.failed} failed ({verdict} it); {self.trainer_note}"
        )

    async def tick(self) -> None:
        """Expire unused offers, report edits of accepted ones and pick up inline comments."""
        while True:
            s = self.settings
            period = min(1.0, s.offer_expiry_s, s.comment_quiet_s, *s.edit_checkpoints) / 4
            await asyncio.sleep(max(0.02, period))
            try:
                self.check_offers(time.monotonic())
            except Exception:
                log.exception("offer bookkeeping failed")

    def check_offers(self, clock: float) -> None:
        """One round of :meth:`tick`."""
        s = self.settings
        for offer in list(self.offers.by_id.values()):
            if offer.status == "offered" and clock - offer.created >= s.offer_expiry_s:
                offer.status = "ignored"
                self.feedback(offer, "ignore")
            elif offer.status == "accepted" and offer.checkpoints_done < len(s.edit_checkpoints):
                self.track(offer, clock)

    def track(self, offer: Offer, clock: float) -> None:
        """Edit tracking and inline comments of one accepted offer."""
        doc = self.workspace.text_documents.get(offer.uri)
        if doc is None:
            return
        s = self.settings
        original = offer.ranking.unit
        unit = find_unit(doc.source, original.qualname, original.start_line)
        current = unit.source if unit is not None else ""
        if unit is not None:
            lo, hi = max(0, unit.start_line - 2), unit.end_line + 1
            region = "".join(doc.lines[lo:hi])
            seen = inline_comments(region, offer.accepted_text)
            for line, text in seen.items():
                old = offer.comments.get(line)
                if old is None or old[0] != text:
                    offer.comments[line] = (text, clock)
                elif clock - old[1] >= s.comment_quiet_s and text not in offer.comments_sent:
                    offer.comments_sent.add(text)
                    self.feedback(offer, "comment", text=text[:MAX_TEXT])
        elapsed = clock - offer.accepted_at
        while (offer.checkpoints_done < len(s.edit_checkpoints)
               and elapsed >= s.edit_checkpoints[offer.checkpoints_done]):
            after = s.edit_checkpoints[offer.checkpoints_done]
            offer.checkpoints_done += 1
            if current in (offer.accepted_text, offer.last_reported):
                continue
            offer.last_reported = current
            reverted = current.strip() == original.source.strip()
            self.feedback(offer, "edit", diff=correction(offer, current),
                          survived=0.0 if reverted else survival(original.source,
                                                                 offer.accepted_text, current),
                          after_s=after, text="full revert" if reverted else None)


def diagnostics_for(ranking: Ranking) -> list[types.Diagnostic]:
    """Hints on lines where the ranking has a refinement: fixable findings, and the policy's
    favourite when it beats STOP."""
    if not ranking.candidates:
        return []
    best = max(ranking.prob(i) for i in range(len(ranking.candidates)))
    lines: dict[int, types.Diagnostic] = {}
    fixed = {(c.proposer, c.line) for c in ranking.candidates}
    for finding in ranking.findings:
        inside = ranking.unit.start_line <= finding.line <= ranking.unit.end_line
        if inside and finding.line not in lines and any(
            proposer.startswith(finding.tool) and line == finding.line for proposer, line in fixed
        ):
            lines[finding.line] = hint(finding.line, f"{finding.code} {finding.message}; "
                                       f"trustfix has a refinement (p={best:.2f})", finding.code)
    top = ranking.order[0]
    candidate = ranking.candidates[top]
    if ranking.prob(top) > ranking.stop_prob and candidate.line not in lines:
        lines[candidate.line] = hint(
            candidate.line, f"trustfix: {candidate.title} (p={ranking.prob(top):.2f})",
            candidate.proposer)
    return list(lines.values())


def hint(line: int, message: str, code: str) -> types.Diagnostic:
    """A hint diagnostic on 1-based ``line``."""
    return types.Diagnostic(
        range=types.Range(types.Position(line - 1, 0), types.Position(line, 0)),
        message=message, severity=types.DiagnosticSeverity.Hint, source="trustfix", code=code,
    )


def explain(ranking: Ranking, top_k: int, reviewer: str, trainer_note: str = NO_TRAINER,
            trust: dict[str, float] | None = None) -> str:
    """Markdown for the hover: how the policy ranked this unit's refinements."""
    policy = (f"policy v{ranking.policy_version}" if ranking.policy_version is not None
              else "a fresh, untrained policy (no checkpoint yet)")
    heading = (f"**trustfix** — `{ranking.unit.qualname}`: {len(ranking.candidates)} candidate "
               f"refinements ranked by {policy}")
    lines = [heading, ""]
    for rank, index in enumerate(ranking.order[:top_k], 1):
        c = ranking.candidates[index]
        lines.append(f"{rank}. {c.title} — p={ranking.prob(index):.2f} ({c.proposer}, line {c.line})")
    lines += ["", f"Leave as is (STOP): p={ranking.stop_prob:.2f}", ""]
    if trust is None:
        lines.append(f"Trust in your feedback ({reviewer}): not reported yet — {trainer_note}.")
    else:
        lines.append(f"Trust in your feedback ({reviewer}): {trust['theta']:.2f} "
                     f"(α {trust['alpha']:.1f}, β {trust['beta']:.1f}, {trust['count']} items), "
                     "as the trainer estimates it.")
    return "\n".join(lines)


server = TrustfixServer()
"""The server instance the handlers below belong to."""


@server.feature(types.INITIALIZE)
def initialize(ls: TrustfixServer, params: types.InitializeParams) -> None:
    """Read ``initializationOptions``; open the outbox and the reviewer key."""
    ls.configure(params.initialization_options)


@server.feature(types.INITIALIZED)
async def initialized(ls: TrustfixServer, params: types.InitializedParams) -> None:
    """Start loading the policy (in the model thread) and the offer timer."""
    ls.start_background()
    ls.send_status()


@server.feature(types.SHUTDOWN)
def shutdown(ls: TrustfixServer, params: None) -> None:
    """Stop background work and close the outbox."""
    ls.shut_down = True
    ls.close()


@server.feature(types.EXIT)
def exit_(ls: TrustfixServer, params: None) -> None:
    """Leave at once: every event is already committed, and a semgrep scan or test run still
    going in a background thread must not hold the process (0 after shutdown, else 1)."""
    ls.close()
    sys.stdout.flush()
    os._exit(0 if ls.shut_down else 1)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: TrustfixServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply ``{"settings": {"trustfix": {...}}}`` without restarting."""
    settings = params.settings
    section = settings.get("trustfix") if isinstance(settings, dict) else None
    if section is None:
        return
    ls.configure(section)
    ls.send_status()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: TrustfixServer, params: types.DidOpenTextDocumentParams) -> None:
    """Diagnostics for the opened document (debounced, off the request path)."""
    ls.schedule_refresh(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: TrustfixServer, params: types.DidChangeTextDocumentParams) -> None:
    """Diagnostics again once typing pauses."""
    ls.schedule_refresh(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: TrustfixServer, params: types.DidCloseTextDocumentParams) -> None:
    """Forget pending diagnostics of a closed document and clear its hints."""
    pending = ls.refreshes.pop(params.text_document.uri, None)
    if pending is not None:
        pending.cancel()
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(params.text_document.uri, []))


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[KIND], resolve_provider=True),
)
async def code_action(
    ls: TrustfixServer, params: types.CodeActionParams
) -> list[types.CodeAction | types.Command]:
    """The policy's top-k refinements of the unit at the range's start."""
    only = params.context.only
    if only and not any(KIND.value.startswith(str(kind)) for kind in only):
        return []
    doc = ls.python_document(params.text_document.uri)
    if doc is None:
        return []
    unit = ls.unit_at_position(doc, params.range.start)
    if unit is None:
        return []
    source = doc.source
    ranking = await ls.rank(doc, unit)
    if ls.workspace.text_documents.get(doc.uri) is not doc or doc.source != source:
        return []
    return [ls.action(offer) for offer in ls.make_offers(doc, ranking)]


@server.feature(types.CODE_ACTION_RESOLVE)
def resolve_code_action(ls: TrustfixServer, params: types.CodeAction) -> types.CodeAction:
    """Fill in the edit of an action offered without one."""
    data = params.data if isinstance(params.data, dict) else {}
    offer = ls.offers.get(data.get("suggestionId", ""))
    if offer is None:
        raise JsonRpcInvalidParams("unknown suggestion id in code action data")
    params.edit = ls.workspace_edit(offer)
    return params


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: TrustfixServer, params: types.HoverParams) -> types.Hover | None:
    """Explain the ranking of the unit under the cursor."""
    doc = ls.python_document(params.text_document.uri)
    if doc is None:
        return None
    unit = ls.unit_at_position(doc, params.position)
    if unit is None:
        return None
    ranking = await ls.rank(doc, unit)
    if not ranking.candidates:
        return None
    return types.Hover(contents=types.MarkupContent(
        kind=types.MarkupKind.Markdown,
        value=explain(ranking, ls.settings.top_k, ls.settings.reviewer, ls.trainer_note,
                      ls.trust)))


@server.command("trustfix.accept")
async def accept(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer applied an offer: record it, apply the edit if the client did not, start
    edit tracking and the tests."""
    offer = ls.offer_from(args, (str,))
    if offer.status == "accepted":
        return
    doc = ls.workspace.text_documents.get(offer.uri)
    if doc is None:
        raise JsonRpcInvalidParams("the document of this suggestion is closed")
    if doc.source == offer.source:
        result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=ls.workspace_edit(offer), label=f"trustfix: {offer.title}"))
        if not result.applied:
            raise JsonRpcInvalidParams(f"the editor did not apply the edit: {result.failure_reason}")
    unit = offer.ranking.unit
    accepted = find_unit(offer.candidate.source, unit.qualname, unit.start_line)
    offer.accepted_text = accepted.source if accepted is not None else ""
    offer.status, offer.accepted_at = "accepted", time.monotonic()
    ls.feedback(offer, "accept")
    ls.last_feedback = f'your acceptance of "{offer.title}" was recorded; {ls.trainer_note}'
    ls.spawn(ls.gather_evidence(offer))


@server.command("trustfix.reject")
def reject(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer rejected an offer."""
    offer = ls.offer_from(args, (str,))
    offer.status = "rejected"
    ls.feedback(offer, "reject")
    ls.last_feedback = f'your rejection of "{offer.title}" was recorded; {ls.trainer_note}'


@server.command("trustfix.rate")
def rate(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer scored an offer 1-5."""
    offer = ls.offer_from(args, (str, int))
    if not 1 <= args[1] <= 5:
        raise JsonRpcInvalidParams("score must be an integer 1-5")
    ls.feedback(offer, "score", score=args[1])
    ls.last_feedback = f'your score {args[1]}/5 for "{offer.title}" was recorded; {ls.trainer_note}'


@server.command("trustfix.comment")
def comment(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer commented on an offer."""
    offer = ls.offer_from(args, (str, str))
    text = args[1].strip()
    if not 1 <= len(text) <= MAX_TEXT:
        raise JsonRpcInvalidParams(f"comment text must be 1-{MAX_TEXT} characters")
    ls.feedback(offer, "comment", text=text)
    ls.last_feedback = f'your comment on "{offer.title}" was recorded; {ls.trainer_note}'


@server.command("trustfix.trust")
def trust(ls: TrustfixServer, *args: Any) -> dict[str, Any]:
    """The reviewer's trust as the trainer last reported it (null until a trainer does)."""
    if args:
        raise JsonRpcInvalidParams("trustfix.trust takes no arguments")
    known = ls.trust or {}
    return {"reviewer": ls.settings.reviewer, "trust": known.get("theta"),
            "alpha": known.get("alpha"), "beta": known.get("beta"),
            "policyVersion": ls.policy.version if ls.policy else None,
            "lastFeedback": ls.last_feedback}
