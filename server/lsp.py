"""``trustfix serve``: the language server (pygls 2).

Code actions offer the policy's top-k refinements of the function under the cursor; every offer
is a Suggestion event and everything the reviewer does with it a Feedback event, stored in the
outbox.  Requests never wait for slow work: ruff and candidate generation run in one analysis
thread, the policy in its own model thread (torch is imported there, after ``initialize`` has
been answered), the outbox and the trainer link in theirs, semgrep and test runs in background
threads with work-done progress.

The parts: :mod:`~trustfix.server.session` (analysis and ranking), :mod:`~trustfix.server.offers`
(the offer lifecycle, on an injected clock), :mod:`~trustfix.server.actions` (code actions,
diagnostics, hover), :mod:`~trustfix.server.trainer_link` (outbox, trainer, trust).  This module
holds the server and its handlers.

The reviewer's trust is estimated by the trainer.  With a trainer configured, the outbox sender
asks it for this reviewer's (pseudonymous) trust after acks and on version announcements, at
most every ``stream.trust_every_s``, in its own thread (never while a request waits); each new
answer updates ``trust``, ``alpha`` and ``beta`` in ``trustfix.trust`` and is sent in
``trustfix/status``.  They are null until the trainer knows the reviewer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from . import actions
from .actions import KIND, explain
from .evidence import TestOutcome, run_command, run_pytest, test_files_importing
from .findings import SemgrepCache, content_hash
from .guards import AnalysisLanes, analyse_bounded
from .offers import MAX_TEXT, Clock, ManualClock, Offer, OfferBook, OfferStatus
from .session import (
    PolicyHost,
    Ranking,
    candidate_text,
    find_unit,
    make_ranking,
    offer_order,
)
from .settings import ServerSettings, merge_options
from .trainer_link import TrainerLink
from .units import Unit, unit_at, units
from .verify import Verifier

log = logging.getLogger(__name__)

STATUS = "trustfix/status"
"""Server -> client notification: ``{policyVersion, trust, reviewer}``."""
ADVANCE_CLOCK = "trustfix/advanceClock"
"""Client -> server request ``{seconds}`` (only with ``serve --manual-clock``, for tests): move
the offers' clock and run one round of offer bookkeeping; answers ``{time, offers}``."""
COMMANDS = (
    "trustfix.accept",
    "trustfix.reject",
    "trustfix.rate",
    "trustfix.comment",
    "trustfix.trust",
)
RANKING_CACHE = 256
"""Rankings kept (by document content and unit)."""


class TrustfixServer(LanguageServer):
    """The language server with its settings, trainer link, policy host and offers."""

    def __init__(
        self, settings: ServerSettings | None = None, clock: Clock = time.monotonic
    ) -> None:
        super().__init__("trustfix", "0.1.0")
        self.settings = settings or ServerSettings()
        self.link = TrainerLink(
            on_trust=self._trust_reported, on_error=self._warn, on_policy=self._policy_installed
        )
        self.policy: PolicyHost | None = None
        self.trust: dict[str, float] | None = None
        """The reviewer's ``{alpha, beta, theta, count}`` as the trainer last reported it."""
        self.analysis = AnalysisLanes(self.settings.large_document_wait_s)
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-tests")
        self.semgrep: SemgrepCache | None = None
        self.rankings: OrderedDict[tuple[Any, ...], Ranking] = OrderedDict()
        self.offers = OfferBook(clock)
        self.verifier = Verifier(
            self.settings.verify_candidates, self.settings.verify_budget_s, on_done=self._verified
        )
        self.refreshes: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_feedback: str | None = None
        self.fresh_said = False
        self.started = False
        self.shut_down = False

    # -- set-up ---------------------------------------------------------------------------
    def configure(self, options: Any) -> None:
        """Apply client options (initializationOptions or the ``trustfix`` settings section)."""
        self.settings, problems = merge_options(self.settings, options)
        for problem in problems:
            log.warning("setting ignored: %s", problem)
        self.link.configure(self.settings, self.started)
        self.verifier.candidates = self.settings.verify_candidates
        self.verifier.budget_s = self.settings.verify_budget_s

    def start_background(self) -> None:
        """Start the policy load, the trainer link and the timer (after ``initialized``)."""
        self.loop = asyncio.get_running_loop()
        self.started = True
        self.semgrep = SemgrepCache()
        self.policy = PolicyHost(
            self.settings.checkpoints,
            self.settings.checkpoint_poll_s,
            on_change=self._policy_changed,
        )
        self.policy.start()
        self.link.start()
        self.spawn(self.tick())

    @property
    def reviewer_id(self) -> str:
        """The reviewer's pseudonym."""
        return self.link.reviewer_id

    @property
    def trainer_note(self) -> str:
        """Where feedback goes: to the trainer when connected, else it waits in the outbox."""
        return self.link.note

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that is kept alive until it finishes."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _warn(self, message: str) -> None:
        """Called in the link's thread: show a warning to the reviewer."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(
                self.window_show_message,
                types.ShowMessageParams(type=types.MessageType.Warning, message=message),
            )

    def _policy_installed(self) -> None:
        """Called in the subscriber's thread: the trainer's new version is in the folder."""
        if self.policy is not None:
            self.policy.check_now()

    def _verified(self, uri: str) -> None:
        """Called in the verifier's thread: new verdicts, so the client's hints (and with them
        its code actions) are refreshed."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.schedule_refresh, uri)

    def _policy_changed(self, version: int | None, fresh: bool) -> None:
        """Called in the model thread: tell the client (once, for a fresh policy)."""
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self._announce_policy, fresh)

    def _announce_policy(self, fresh: bool) -> None:
        if fresh and not self.fresh_said:
            self.fresh_said = True
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info,
                    message=f"trustfix: no policy checkpoint in {self.settings.checkpoints}; "
                    "ranking with a fresh, untrained policy",
                )
            )
        self.send_status()

    def _trust_reported(self, trust: dict[str, float] | None) -> None:
        """Called in the link's threads with the trainer's answer: a change goes to the client."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._set_trust, trust)

    def _set_trust(self, trust: dict[str, float] | None) -> None:
        if trust != self.trust:
            self.trust = trust
            self.send_status()

    def send_status(self) -> None:
        """Send ``trustfix/status``."""
        version = self.policy.version if self.policy else None
        self.protocol.notify(
            STATUS,
            {
                "policyVersion": version,
                "trust": self.trust["theta"] if self.trust else None,
                "reviewer": self.settings.reviewer,
            },
        )

    def close(self) -> None:
        """Stop the threads; the events handed over are stored and the outbox closed."""
        for task in list(self.tasks) + list(self.refreshes.values()):
            task.cancel()
        if self.policy:
            self.policy.close()
        self.analysis.shutdown(wait=False, cancel_futures=True)
        self.background.shutdown(wait=False, cancel_futures=True)
        self.verifier.close()
        self.link.close()

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
        column = len(
            lines[position.line]
            .encode("utf-16-le")[: 2 * position.character]
            .decode("utf-16-le", errors="ignore")
        )
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

    def make_offers(
        self, doc: TextDocument, ranking: Ranking, cursor_line: int | None = None
    ) -> list[Offer]:
        """The top-k offers of a ranking (verified ones first, see :func:`offer_order`), each
        recorded once as a Suggestion.  Candidates not yet verified are verified in the
        background, in the order they would be offered, when the workspace has tests for them."""
        focus = set(self.verifier.failing_lines.get(content_hash(doc.source), ()))
        if cursor_line is not None:
            focus.add(cursor_line)
        margin = self.settings.near_cursor_margin
        root, path = self.workspace.root_path, to_fs_path(doc.uri)
        if root and path and ranking.candidates and self.settings.verify_candidates:
            self.verifier.submit(
                doc.uri,
                Path(root),
                Path(path),
                doc.source,
                ranking,
                offer_order(ranking, {}, focus, margin),
            )
        verdicts = self.verifier.known(doc.source, ranking)
        order = offer_order(ranking, verdicts, focus, margin)[: self.settings.top_k]
        key = (
            doc.uri,
            content_hash(doc.source),
            ranking.unit.start_byte,
            ranking.policy_version,
            tuple(order),
        )
        known = self.offers.open_offers(key)
        if known is not None:
            return known
        offers = [
            Offer(uuid4().hex, doc.uri, doc.source, ranking, index, verdict=verdicts.get(index))
            for index in order
        ]
        for rank, offer in enumerate(offers):
            offer.event = self.link.suggestion_event(offer, rank)
            self.link.record(offer.event)
        self.offers.add(key, offers, self.settings.max_offers)
        return offers

    def feedback(self, offer: Offer, kind: str, **fields: Any) -> None:
        """Record one Feedback event about ``offer``."""
        self.link.feedback(offer, kind, **fields)

    # -- edits ----------------------------------------------------------------------------
    def workspace_edit(self, offer: Offer) -> types.WorkspaceEdit:
        """The offer's change as a WorkspaceEdit against the document's current version."""
        return actions.workspace_edit(
            self.workspace.text_documents.get(offer.uri), offer, self.client_capabilities
        )

    def action(self, offer: Offer) -> types.CodeAction | types.Command:
        """The code action (or, for old clients, the command) of one offer."""
        label = offer.verdict.label if offer.verdict is not None else None
        return actions.code_action(
            offer,
            offer.ranking.prob(offer.index),
            label,
            self.workspace.text_documents.get(offer.uri),
            self.client_capabilities,
        )

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
            except Exception as error:
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
                found.extend(actions.diagnostics_for(ranking))
        except Exception:
            log.exception("diagnostics for %s failed", uri)
            return
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri, found, version=version)
        )

    async def scan(self, uri: str, source: str) -> None:
        """semgrep on ``source`` in the background; diagnostics again once it is done."""
        try:
            await self.progress(
                "trustfix: semgrep", asyncio.wrap_future(self.semgrep.submit(source))
            )
        except Exception as error:
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
                self.background, test_files_importing, Path(root), Path(path).stem
            )
            if not tests:
                return
            job = partial(
                run_pytest, Path(root), Path(path), doc.source, tests, settings.test_timeout_s
            )
        outcome: TestOutcome = await self.progress(
            "trustfix: running tests", loop.run_in_executor(self.background, job)
        )
        verdict = "supports" if outcome.failed == 0 and outcome.passed > 0 else "refutes"
        evidence = Evidence(
            outcome.command,
            outcome.passed,
            outcome.failed,
            outcome.exit_code,
            verdict,
            outcome.summary,
        )
        offer.event = msgspec.structs.replace(
            offer.event, revision=offer.event.revision + 1, r_env=outcome.r_env, evidence=evidence
        )
        self.link.record(offer.event)
        self.last_feedback = (
            f'tests after your acceptance of "{offer.title}": {outcome.passed} passed, '
            f"{outcome.failed} failed ({verdict} it); {self.trainer_note}"
        )

    async def tick(self) -> None:
        """Offer bookkeeping (expiry, edit tracking, inline comments) on a timer."""
        while True:
            s = self.settings
            period = min(1.0, s.offer_expiry_s, s.comment_quiet_s, *s.edit_checkpoints) / 4
            await asyncio.sleep(max(0.02, period))
            try:
                self.check_offers()
            except Exception:
                log.exception("offer bookkeeping failed")

    def check_offers(self) -> None:
        """One round of :meth:`tick` at the offers' clock: record the feedback found due."""

        def text_of(uri: str) -> str | None:
            doc = self.workspace.text_documents.get(uri)
            return None if doc is None else doc.source

        for note in self.offers.tick(self.settings, text_of):
            self.feedback(note.offer, note.kind, **note.fields)


server = TrustfixServer()
"""The server instance the handlers below belong to."""


def use_manual_clock(ls: TrustfixServer) -> ManualClock:
    """Drive ``ls``'s offers by a :class:`ManualClock` (``serve --manual-clock``, for tests)."""
    clock = ManualClock()
    ls.offers.clock = clock
    return clock


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
def did_change_configuration(
    ls: TrustfixServer, params: types.DidChangeConfigurationParams
) -> None:
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
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(params.text_document.uri, [])
    )


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
    offers = ls.make_offers(doc, ranking, params.range.start.line + 1)
    return [ls.action(offer) for offer in offers]


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
    return types.Hover(
        contents=types.MarkupContent(
            kind=types.MarkupKind.Markdown,
            value=explain(
                ranking, ls.settings.top_k, ls.settings.reviewer, ls.trainer_note, ls.trust
            ),
        )
    )


@server.command("trustfix.accept")
async def accept(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer applied an offer: record it, apply the edit if the client did not, start
    edit tracking and the tests."""
    offer = ls.offer_from(args, (str,))
    if offer.status is OfferStatus.ACCEPTED:
        return
    doc = ls.workspace.text_documents.get(offer.uri)
    if doc is None:
        raise JsonRpcInvalidParams("the document of this suggestion is closed")
    if doc.source == offer.source:
        result = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(
                edit=ls.workspace_edit(offer), label=f"trustfix: {offer.title}"
            )
        )
        if not result.applied:
            raise JsonRpcInvalidParams(
                f"the editor did not apply the edit: {result.failure_reason}"
            )
    unit = offer.ranking.unit
    accepted = find_unit(offer.candidate.source, unit.qualname, unit.start_line)
    ls.offers.accept(offer, accepted.source if accepted is not None else "")
    ls.feedback(offer, "accept")
    ls.last_feedback = f'your acceptance of "{offer.title}" was recorded; {ls.trainer_note}'
    ls.spawn(ls.gather_evidence(offer))


@server.command("trustfix.reject")
def reject(ls: TrustfixServer, *args: Any) -> None:
    """The reviewer rejected an offer."""
    offer = ls.offer_from(args, (str,))
    ls.offers.reject(offer)
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
    return {
        "reviewer": ls.settings.reviewer,
        "trust": known.get("theta"),
        "alpha": known.get("alpha"),
        "beta": known.get("beta"),
        "policyVersion": ls.policy.version if ls.policy else None,
        "lastFeedback": ls.last_feedback,
    }


@server.feature(ADVANCE_CLOCK)
def advance_clock(ls: TrustfixServer, params: Any) -> dict[str, Any]:
    """Move a manual clock by ``params.seconds`` and run one round of offer bookkeeping."""
    clock = ls.offers.clock
    if not isinstance(clock, ManualClock):
        raise JsonRpcInvalidParams(f"{ADVANCE_CLOCK} needs `trustfix serve --manual-clock`")
    seconds = (
        params.get("seconds") if isinstance(params, dict) else getattr(params, "seconds", None)
    )
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise JsonRpcInvalidParams("seconds must be a non-negative number")
    clock.advance(float(seconds))
    ls.check_offers()
    return {"time": clock(), "offers": len(ls.offers)}
