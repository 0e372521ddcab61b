"""A scripted editor session: start ``trustfix serve``, open buggy HumanEval functions, and act
as a reviewer would (accept the top refinement, reject the next, rate, comment), then show what
the server recorded in its outbox."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any, Union

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.table import Table

from trustfix.server.outbox import Outbox
from trustfix.trainer.events import Feedback, Suggestion


def lsp_converter() -> Any:
    """lsprotocol's converter, except that a CodeAction carrying a ``command`` object stays a
    CodeAction (lsprotocol 2025.0.0 turns every such action into a bare Command)."""
    conv = get_converter()

    def action_or_command(obj: Any, _: type) -> types.Command | types.CodeAction:
        kind = types.Command if isinstance(obj.get("command"), str) else types.CodeAction
        return conv.structure(obj, kind)

    conv.register_structure_hook(types.Command | types.CodeAction, action_or_command)
    conv.register_structure_hook(Union[types.Command, types.CodeAction], action_or_command)  # noqa: UP007
    return conv


def apply_text_edit(text: str, edit: types.TextEdit) -> str:
    """``text`` with one TextEdit applied (ASCII text: UTF-16 units are characters)."""
    lines = text.splitlines(keepends=True)

    def offset(pos: types.Position) -> int:
        return sum(len(line) for line in lines[: pos.line]) + pos.character

    return text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]


EDITOR_CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(
                    value_set=[types.CodeActionKind.RefactorRewrite]))),
    ),
    workspace=types.WorkspaceClientCapabilities(
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)),
)
"""An editor that takes code-action literals with inline edits (it cannot resolve them)."""


async def review_session(workdir: Path, tasks: list[Any], console: Console) -> Path:
    """Drive the server through one reviewer's session on ``tasks``; return the data dir."""
    data = workdir / "data"
    client = LanguageClient("trustfix-demo", "0.1", converter_factory=lsp_converter)
    statuses: list[Any] = []
    client.feature("trustfix/status")(lambda params: statuses.append(params))
    client.feature(types.WINDOW_LOG_MESSAGE)(lambda params: None)
    await client.start_io(sys.executable, "-m", "trustfix", "serve", "--log-level", "WARNING")
    await client.initialize_async(types.InitializeParams(
        capabilities=EDITOR_CAPABILITIES,
        root_uri=workdir.as_uri(),
        initialization_options={"reviewerId": "demo-reviewer", "role": "student", "topK": 3,
                                "telemetry": "all", "dataDir": str(data)},
    ))
    client.initialized(types.InitializedParams())
    table = Table(title="scripted reviewer session")
    for column in ("task", "offered (policy probability)", "reviewer did"):
        table.add_column(column)
    try:
        for task in tasks:
            path = workdir / f"{task.entry_point}.py"
            path.write_text(task.buggy)
            uri = path.as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=task.buggy)))
            pos = types.Position(task.bug.line - 1, 4)
            offered = await client.text_document_code_action_async(types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri), range=types.Range(pos, pos),
                context=types.CodeActionContext(diagnostics=[])))
            if not offered:
                table.add_row(task.id, "nothing offered", "-")
                continue
            ids = [a.command.arguments[0] for a in offered]
            top = offered[0]
            (edit,) = (top.edit.document_changes or [None])
            after = apply_text_edit(task.buggy, edit.edits[0])
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=after)]))
            did = ["accept #1", "rate #1 4/5"]
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams("trustfix.accept", [ids[0]]))
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams("trustfix.rate", [ids[0], 4]))
            if len(ids) > 1:
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams("trustfix.reject", [ids[1]]))
                did.append("reject #2")
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                "trustfix.comment", [ids[0], f"the bug was on line {task.bug.line}"]))
            did.append("comment #1")
            table.add_row(task.id, "\n".join(a.title for a in offered), ", ".join(did))
        trust = await client.workspace_execute_command_async(
            types.ExecuteCommandParams("trustfix.trust", []))
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    console.print(table)
    console.print(f"trustfix.trust says: {trust}")
    return data


def summarize_outbox(data: Path, console: Console) -> dict[str, int]:
    """Count the events the session left in the server's outbox, by kind."""
    outbox = Outbox(data / "outbox.sqlite")
    try:
        found = [event for _, event in outbox.pending(100_000)]
    finally:
        outbox.close()
    counts: dict[str, int] = {"suggestion": sum(isinstance(e, Suggestion) for e in found)}
    for event in found:
        if isinstance(event, Feedback):
            counts[event.kind] = counts.get(event.kind, 0) + 1
    console.print(f"outbox events waiting for the trainer: {counts}")
    return counts


def run_editor_demo(n_tasks: int = 3, console: Console | None = None) -> dict[str, int]:
    """The whole scripted session on the first ``n_tasks`` HumanEval refinement tasks."""
    from trustfix.bench.tasks import make_tasks

    console = console or Console()
    tasks = make_tasks(seed=0)[:n_tasks]
    with tempfile.TemporaryDirectory(prefix="trustfix-demo-") as tmp:
        data = asyncio.run(review_session(Path(tmp), tasks, console))
        return summarize_outbox(data, console)
