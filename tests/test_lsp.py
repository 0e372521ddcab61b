"""End-to-end tests of ``trustfix serve`` over stdio with pytest-lsp: offers, every kind of
feedback in the outbox, and the bad inputs of issue 5.  The server runs with ``--manual-clock``:
the offers' timers move only when a test advances the clock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import register_lsp_features
from trustfix.bench.editor_demo import apply_text_edit, lsp_converter
from trustfix.server.outbox import Outbox
from trustfix.trainer.events import Feedback, Suggestion

BUGGY = (Path(__file__).parent / "fixtures" / "buggy.txt").read_text()
"""Two functions: ``add`` compares with ``== None`` (ruff E711)."""
ADD_LINE = 14  # 0-based line of "    if a == None:"
TITLE = re.compile(r"^trustfix: .+ \(p=[01]\.\d\d\)$")
TIMING = {"debounce": 0.05, "offerExpiry": 1.5, "editCheckpoints": [0.4, 0.8], "commentQuiet": 0.15}


def make_client() -> LanguageClient:
    """pytest-lsp's client, plus a ``workspace/applyEdit`` handler that edits its own copy of
    each document and sends ``didChange`` like an editor does."""
    client = LanguageClient(converter_factory=lsp_converter)
    register_lsp_features(client)
    client.texts: dict[str, str] = {}
    client.statuses: list[Any] = []

    @client.feature("trustfix/status")
    def status(ls: LanguageClient, params: Any) -> None:
        ls.statuses.append(params)

    client.versions: dict[str, int] = {}

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(ls: LanguageClient, params: types.ApplyWorkspaceEditParams):
        edit = params.edit
        if edit.document_changes:
            pairs = [(c.text_document.uri, e) for c in edit.document_changes for e in c.edits]
        else:
            pairs = [(uri, e) for uri, edits in edit.changes.items() for e in edits]
        for uri, text_edit in pairs:
            change(ls, uri, apply_text_edit(ls.texts[uri], text_edit))
        return types.ApplyWorkspaceEditResult(applied=True)

    return client


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.texts[uri], client.versions[uri] = text, 1
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )


def change(client: LanguageClient, uri: str, text: str) -> None:
    """Replace the whole document (full-text didChange)."""
    client.texts[uri] = text
    client.versions[uri] += 1
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=client.versions[uri]
            ),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def start(
    tmp_path: Path, capabilities: types.ClientCapabilities, **options: Any
) -> LanguageClient:
    config = ClientServerConfig(
        server_command=[
            str(Path(sys.executable).parent / "trustfix"),
            "serve",
            "--log-level",
            "WARNING",
            "--manual-clock",
        ],
        client_factory=make_client,
    )
    client = await config.start()
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities,
            root_uri=tmp_path.as_uri(),
            initialization_options={
                "reviewerId": "ada",
                "role": "student",
                "trainerEndpoint": "",
                "topK": 3,
                "telemetry": "all",
                "dataDir": str(tmp_path / "data"),
                **TIMING,
                **options,
            },
        )
    )
    return client


async def actions(client: LanguageClient, uri: str, line: int, character: int = 8) -> list:
    pos = types.Position(line, character)
    return await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri),
            range=types.Range(pos, pos),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


async def advance(client: LanguageClient, seconds: float) -> dict[str, Any]:
    """Move the server's offer clock and run its bookkeeping once: ``{time, offers}``."""
    return await client.protocol.send_request_async("trustfix/advanceClock", {"seconds": seconds})


async def stop(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


def events(tmp_path: Path) -> tuple[list[Suggestion], list[Feedback]]:
    outbox = Outbox(tmp_path / "data" / "outbox.sqlite")
    try:
        found = [event for _, event in outbox.pending(10_000)]
    finally:
        outbox.close()
    return (
        [e for e in found if isinstance(e, Suggestion)],
        [e for e in found if isinstance(e, Feedback)],
    )


def no_resolve() -> types.ClientCapabilities:
    """VS Code's capabilities without ``codeAction/resolve`` support."""
    caps = client_capabilities("visual_studio_code")
    caps.text_document.code_action.resolve_support = None
    return caps


@pytest.mark.timeout(300)  # the first ranking loads the policy: slow on a loaded machine
async def test_vscode_session_records_every_feedback(tmp_path: Path) -> None:
    client = await start(tmp_path, client_capabilities("visual_studio_code"))
    uri = (tmp_path / "buggy.py").as_uri()
    try:
        open_doc(client, uri, BUGGY)
        for _ in range(600):  # diagnostics arrive off the request path, after the debounce
            await asyncio.sleep(0.1)
            if client.diagnostics.get(uri):
                break
        hints = client.diagnostics.get(uri)
        assert hints and all(d.severity == types.DiagnosticSeverity.Hint for d in hints)
        assert any(d.range.start.line == ADD_LINE and "E711" in d.message for d in hints)

        offered = await actions(client, uri, ADD_LINE)
        assert len(offered) == 3
        assert all(TITLE.match(a.title) and a.kind == "refactor.rewrite" for a in offered)
        assert all(a.edit is None and a.command.command == "trustfix.accept" for a in offered)
        ids = [a.command.arguments[0] for a in offered]
        assert len(set(ids)) == 3
        again = await actions(client, uri, ADD_LINE)  # the same offers, recorded once
        assert [a.command.arguments[0] for a in again] == ids

        resolved = await client.code_action_resolve_async(offered[0])
        assert resolved.edit is not None and list(resolved.command.arguments) == [ids[0]]
        (doc_edit,) = resolved.edit.document_changes
        assert doc_edit.text_document.version == 1
        after = apply_text_edit(BUGGY, doc_edit.edits[0])
        assert after != BUGGY and "def add(a, b):" in after
        change(client, uri, after)
        assert await command(client, "trustfix.accept", ids[0]) is None
        await command(client, "trustfix.reject", ids[1])
        await command(client, "trustfix.rate", ids[0], 4)
        await command(client, "trustfix.comment", ids[0], "  good catch  ")
        edited = after.replace(
            "    return a + b\n", "    # trustfix: keep the None check\n    return b + a\n"
        )
        assert edited != after
        change(client, uri, edited)
        await advance(client, 0.5)  # the first edit checkpoint passes, the comment is seen
        await advance(client, 0.5)  # the second one passes, the inline comment went quiet

        assert client.statuses[-1] == {"policyVersion": None, "trust": None, "reviewer": "ada"}
        trust = await command(client, "trustfix.trust")
        assert trust["reviewer"] == "ada" and trust["trust"] is None and trust["alpha"] is None
        assert trust["policyVersion"] is None
        assert "comment" in trust["lastFeedback"]
        hover = await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(4, 8))
        )
        assert "STOP" in hover.contents.value and "not reported yet" in hover.contents.value
        clock = await advance(client, 1.0)  # the third offer expires unused
        assert clock["time"] == 2.0 and clock["offers"] == 3
        # finished offers stay for late ratings (offer_keep_s), then are dropped
        assert (await advance(client, 597.0))["offers"] == 3
        assert (await advance(client, 3.0))["offers"] == 0
        with pytest.raises(JsonRpcException, match="unknown suggestion id"):
            await command(client, "trustfix.rate", ids[0], 5)
    finally:
        await stop(client)

    suggestions, feedback = events(tmp_path)
    assert sorted(s.id for s in suggestions) == sorted(ids)
    key = tmp_path / "data" / "reviewer.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    reviewer = "r-" + hmac.new(key.read_bytes(), b"ada", hashlib.sha256).hexdigest()[:32]
    for s in suggestions:
        assert s.reviewer == reviewer and s.role == "student" and s.policy_version is None
        assert s.state and "def add" in s.state and s.candidates[s.chosen - 1].diff
        assert s.old_log_prob == pytest.approx(s.candidates[s.chosen - 1].log_prob)
    got = sorted(
        (ids.index(f.suggestion_id), f.kind, f.text, f.score) for f in feedback if f.kind != "edit"
    )
    assert got == [
        (0, "accept", None, None),
        (0, "comment", "good catch", None),
        (0, "comment", "keep the None check", None),
        (0, "score", None, 4),
        (1, "reject", None, None),
        (2, "ignore", None, None),
    ]
    (edit,) = [f for f in feedback if f.kind == "edit"]
    assert edit.suggestion_id == ids[0] and edit.after_s == 0.4
    assert "+    return b + a" in edit.diff and "-    return a + b" in edit.diff
    assert edit.text is None and 0.0 <= edit.survived <= 1.0
    assert all(f.reviewer == reviewer for f in feedback)


async def test_client_without_resolve_gets_inline_edits_and_a_revert_is_reported(
    tmp_path: Path,
) -> None:
    client = await start(tmp_path, no_resolve(), telemetry="noCode")
    uri = (tmp_path / "buggy.py").as_uri()
    try:
        open_doc(client, uri, BUGGY)
        offered = await actions(client, uri, ADD_LINE)
        assert offered and all(a.edit is not None for a in offered)
        first = offered[0]
        (doc_edit,) = first.edit.document_changes
        change(client, uri, apply_text_edit(BUGGY, doc_edit.edits[0]))
        await command(client, "trustfix.accept", first.command.arguments[0])
        change(client, uri, BUGGY)  # the reviewer undoes the change completely
        await advance(client, 1.0)
    finally:
        await stop(client)
    suggestions, feedback = events(tmp_path)
    assert len(suggestions) == len(offered)
    assert all(s.state is None and all(c.diff is None for c in s.candidates) for s in suggestions)
    assert all(s.features["candidates"] == len(s.candidates) for s in suggestions)
    (edit,) = [f for f in feedback if f.kind == "edit"]
    assert edit.text == "full revert" and edit.survived == 0.0 and edit.diff == ""


async def test_command_only_client_gets_the_edit_applied_by_the_server(tmp_path: Path) -> None:
    client = await start(tmp_path, types.ClientCapabilities())
    uri = (tmp_path / "buggy.py").as_uri()
    try:
        open_doc(client, uri, BUGGY)
        offered = await actions(client, uri, ADD_LINE)
        assert offered and all(isinstance(a, types.Command) for a in offered)
        assert all(a.command == "trustfix.accept" and TITLE.match(a.title) for a in offered)
        await command(client, "trustfix.accept", *offered[0].arguments)
        assert client.texts[uri] != BUGGY and client.versions[uri] == 2
        assert "def add(a, b):" in client.texts[uri]
    finally:
        await stop(client)
    _, feedback = events(tmp_path)
    assert [f.kind for f in feedback] == ["accept"]


async def test_bad_inputs_get_errors_or_empty_answers(tmp_path: Path) -> None:
    # offers must not expire during this test, however slow the machine: no feedback at all
    client = await start(tmp_path, client_capabilities("visual_studio_code"), offerExpiry=600)
    good = (tmp_path / "good.py").as_uri()
    try:
        text_uri = (tmp_path / "notes.txt").as_uri()
        open_doc(client, text_uri, BUGGY, language="plaintext")
        assert list(await actions(client, text_uri, ADD_LINE)) == []

        broken = BUGGY + "\ndef broken(:\n    return )\n"
        broken_uri = (tmp_path / "broken.py").as_uri()
        open_doc(client, broken_uri, broken)
        assert len(await actions(client, broken_uri, ADD_LINE)) == 3

        huge_uri = (tmp_path / "huge.py").as_uri()
        open_doc(client, huge_uri, BUGGY * (5_000_000 // len(BUGGY)))
        assert list(await actions(client, huge_uri, ADD_LINE)) == []

        garbage = bytes(range(256)).decode("latin-1") * 40
        garbage_uri = (tmp_path / "garbage.py").as_uri()
        open_doc(client, garbage_uri, garbage)
        assert list(await actions(client, garbage_uri, 0, 0)) == []

        long_unit = "def long(x):\n" + "    x = x + 1\n" * 5000 + "    return x\n"
        long_uri = (tmp_path / "long.py").as_uri()
        open_doc(client, long_uri, long_unit)
        assert list(await actions(client, long_uri, 10)) == []

        assert list(await actions(client, broken_uri, 10_000, 3)) == []
        assert await actions(client, broken_uri, ADD_LINE, 10_000) is not None
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(broken_uri))
        )
        assert list(await actions(client, broken_uri, ADD_LINE)) == []

        for name, args, message in [
            ("trustfix.accept", [], "expected 1 argument"),
            ("trustfix.accept", [123], "must be a str"),
            ("trustfix.accept", ["no-such-id"], "unknown suggestion id"),
            ("trustfix.reject", ["no-such-id"], "unknown suggestion id"),
            ("trustfix.rate", ["no-such-id"], "expected 2 argument"),
            ("trustfix.comment", ["no-such-id", 5], "must be a str"),
            ("trustfix.trust", ["x"], "no arguments"),
        ]:
            with pytest.raises(JsonRpcException, match=message):
                await command(client, name, *args)

        open_doc(client, good, BUGGY)
        offered = await actions(client, good, ADD_LINE)
        sid = offered[0].command.arguments[0]
        for name, args, message in [
            ("trustfix.rate", [sid, 9], "1-5"),
            ("trustfix.rate", [sid, True], "must be a int"),
            ("trustfix.comment", [sid, "   "], "1-2000"),
            ("trustfix.comment", [sid, "x" * 2001], "1-2000"),
        ]:
            with pytest.raises(JsonRpcException, match=message):
                await command(client, name, *args)
        with pytest.raises(JsonRpcException, match="unknown suggestion id"):
            await client.code_action_resolve_async(
                types.CodeAction(title="x", data={"suggestionId": "nope"})
            )
        # still serving
        assert len(await actions(client, good, ADD_LINE)) == 3
        assert (await command(client, "trustfix.trust"))["reviewer"] == "ada"
    finally:
        await stop(client)
    _, feedback = events(tmp_path)
    assert feedback == []


@pytest.mark.slow
@pytest.mark.timeout(300)  # the sandbox starts and runs the tests in the background
async def test_candidates_are_verified_by_the_workspace_tests_and_checked_after_accept(
    tmp_path: Path,
) -> None:
    """Verified suggestions: the sandbox runs the test file that imports the module against the
    top candidates, the fix is offered first and marked; after the accept, execution evidence."""
    source = "def add(a, b):\n    return a - b\n"
    (tmp_path / "calc.py").write_text(source)
    (tmp_path / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    client = await start(tmp_path, no_resolve(), topK=20, verifyCandidates=20)
    uri = (tmp_path / "calc.py").as_uri()
    try:
        open_doc(client, uri, source)
        for _ in range(600):  # verification runs in the background; requests never wait for it
            offered = await actions(client, uri, 1)
            if "✓" in offered[0].title:
                break
            await asyncio.sleep(0.2)
        fix = offered[0]
        assert "swap - for +" in fix.title and "✓ 1/1 tests" in fix.title
        assert fix.title.endswith(f"(p={fix.data['probability']:.2f})")
        assert fix.data["suggestionId"] == fix.command.arguments[0]
        assert not [a for a in offered[1:] if "✓" in a.title]  # only the fix passes
        (doc_edit,) = fix.edit.document_changes
        change(client, uri, apply_text_edit(source, doc_edit.edits[0]))
        await command(client, "trustfix.accept", fix.command.arguments[0])
        for _ in range(300):
            await asyncio.sleep(0.1)
            checked = [s for s in events(tmp_path)[0] if s.revision == 1]
            if checked:
                break
    finally:
        await stop(client)
    offered_fix = [
        s for s in events(tmp_path)[0] if s.id == fix.command.arguments[0] and s.revision == 0
    ]
    (verified,) = offered_fix
    assert verified.r_env == 1.0 and verified.evidence.command == "sandbox: test_calc.py"
    assert verified.evidence.verdict == "supports"
    (suggestion,) = checked
    assert suggestion.id == fix.command.arguments[0]
    assert (suggestion.evidence.passed, suggestion.evidence.failed) == (1, 0)
    assert suggestion.evidence.verdict == "supports" and suggestion.r_env == 1.0
