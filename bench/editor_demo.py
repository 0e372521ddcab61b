"""A scripted editor session: start ``trustfix serve``, open buggy HumanEval functions, and act
as a reviewer would (accept the top refinement, reject the next, rate, comment), then show what
the server recorded in its outbox."""

from __future__ import annotations

import asyncio
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
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
                    value_set=[types.CodeActionKind.RefactorRewrite]
                )
            )
        ),
    ),
    workspace=types.WorkspaceClientCapabilities(
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
    ),
)
"""An editor that takes code-action literals with inline edits (it cannot resolve them)."""


def test_file(task: Any) -> str:
    """The task's HumanEval tests as a workspace test file of its module (pytest style, and
    ``check(candidate)`` for the sandbox's verification)."""
    ep = task.entry_point
    body = task.tests.rstrip()
    call = f"check({ep})"
    if body.endswith(call):
        body = body[: -len(call)].rstrip()
    return f"from {ep} import {ep}\n\n{body}\n\n\ndef test_{ep}():\n    check({ep})\n"


async def start_server(workdir: Path, options: dict[str, Any]) -> LanguageClient:
    """``trustfix serve`` on ``workdir`` (its data in ``workdir/data``, its log in
    ``data/server.log``), initialized with ``options`` for an editor of
    :data:`EDITOR_CAPABILITIES`."""
    data = workdir / "data"
    client = LanguageClient("trustfix-demo", "0.1", converter_factory=lsp_converter)
    client.feature("trustfix/status")(lambda params: None)
    client.feature(types.WINDOW_LOG_MESSAGE)(lambda params: None)
    data.mkdir(parents=True, exist_ok=True)
    # the server's log goes to a file: pygls pipes stderr and never reads it
    serve = [sys.executable, "-m", "trustfix", "serve", "--log-level", "INFO"]
    await client.start_io(
        "/bin/sh", "-c", f'exec "$@" 2>>{shlex.quote(str(data / "server.log"))}', "sh", *serve
    )
    await client.initialize_async(
        types.InitializeParams(
            capabilities=EDITOR_CAPABILITIES,
            root_uri=workdir.as_uri(),
            initialization_options={"telemetry": "all", "dataDir": str(data), **options},
        )
    )
    client.initialized(types.InitializedParams())
    return client


async def review_session(
    workdir: Path,
    tasks: list[Any],
    console: Console,
    trainer: dict[str, str] | None = None,
    settled: Callable[[dict[str, Any]], bool] | None = None,
    wait_s: float = 90.0,
) -> tuple[Path, dict[str, Any]]:
    """Drive the server through one reviewer's session on ``tasks`` (each module beside its
    tests, so suggestions are verified and accepts checked); return the data dir and the last
    ``trustfix.trust`` answer.

    With ``trainer`` (``{"trainerEndpoint": ..., "trainerPublishEndpoint": ...}``) the server
    streams its events there, and the session asks ``trustfix.trust`` until ``settled(answer)``
    says the policy version and trust are the trainer's latest (at most ``wait_s`` seconds)."""
    data = workdir / "data"
    client = await start_server(
        workdir,
        {
            "reviewerId": "demo-reviewer",
            "role": "student",
            "topK": 3,
            "checkpointPoll": 0.2,
            **(trainer or {}),
        },
    )
    table = Table(title="scripted reviewer session")
    for column in ("task", "offered (policy probability)", "reviewer did"):
        table.add_column(column)
    try:
        for task in tasks:
            path = workdir / f"{task.entry_point}.py"
            path.write_text(task.buggy)
            (workdir / f"test_{task.entry_point}.py").write_text(test_file(task))
            uri = path.as_uri()
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(
                        uri=uri, language_id="python", version=1, text=task.buggy
                    )
                )
            )
            pos = types.Position(task.bug.line - 1, 4)
            offered = await client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri),
                    range=types.Range(pos, pos),
                    context=types.CodeActionContext(diagnostics=[]),
                )
            )
            if not offered:
                table.add_row(task.id, "nothing offered", "-")
                continue
            ids = [a.command.arguments[0] for a in offered]
            top = offered[0]
            (edit,) = top.edit.document_changes or [None]
            after = apply_text_edit(task.buggy, edit.edits[0])
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[types.TextDocumentContentChangeWholeDocument(text=after)],
                )
            )
            did = ["accept #1", "rate #1 4/5"]
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams("trustfix.accept", [ids[0]])
            )
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams("trustfix.rate", [ids[0], 4])
            )
            if len(ids) > 1:
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams("trustfix.reject", [ids[1]])
                )
                did.append("reject #2")
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    "trustfix.comment", [ids[0], f"the bug was on line {task.bug.line}"]
                )
            )
            did.append("comment #1")
            table.add_row(task.id, "\n".join(a.title for a in offered), ", ".join(did))
        trust = await client.workspace_execute_command_async(
            types.ExecuteCommandParams("trustfix.trust", [])
        )
        deadline = time.monotonic() + (wait_s if trainer and settled else 0.0)
        while time.monotonic() < deadline and not settled(trust):
            await asyncio.sleep(0.25)  # the trainer's policy and trust reach the server
            trust = await client.workspace_execute_command_async(
                types.ExecuteCommandParams("trustfix.trust", [])
            )
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    console.print(table)
    console.print(f"trustfix.trust says: {trust}")
    if trust["trust"] is not None:
        policy = (
            f"policy v{trust['policyVersion']}"
            if trust["policyVersion"] is not None
            else "no policy version installed yet"
        )
        console.print(
            f"the trainer's trust in {trust['reviewer']}'s feedback: {trust['trust']:.2f} "
            f"(alpha {trust['alpha']:.2f}, beta {trust['beta']:.2f}), {policy}"
        )
    elif trainer:
        console.print("the trainer has not reported this reviewer's trust yet")
    return data, trust


def trainer_settled(store: Any, reviewer: str, feedback: int, trust: dict[str, Any]) -> bool:
    """Whether the server's ``trustfix.trust`` answer shows the trainer's latest state: the
    trainer stored the session's ``feedback`` items and processed and trained on every event it
    has, and the server has its newest policy version and its current trust in ``reviewer``."""
    if store.count("feedback") < feedback or trust["trust"] is None:
        return False
    last = store.max_seq()
    if min(store.get_state("processed_seq", 0), store.get_state("trained_seq", 0)) < last:
        return False
    versions = store.versions()
    known = store.reviewer_trust(reviewer)
    return (
        bool(versions)
        and trust["policyVersion"] == versions[-1]["version"]
        and known is not None
        and abs(known["alpha"] - trust["alpha"]) < 1e-9
        and abs(known["beta"] - trust["beta"]) < 1e-9
    )


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


def run_editor_demo(
    n_tasks: int = 3, console: Console | None = None, with_trainer: bool = True
) -> dict[str, dict[str, Any]]:
    """The whole scripted session on the first ``n_tasks`` HumanEval refinement tasks; with
    ``with_trainer`` a trainer daemon on loopback receives the events, trains and publishes a
    policy version that the server installs.  Returns the events left in the outbox by kind
    and, with the trainer, what it stored, how many versions it published and the reviewer's
    trust the server got back from it."""
    import functools
    import threading

    from trustfix.bench.tasks import make_tasks
    from trustfix.server.privacy import installation_key, pseudonym
    from trustfix.trainer.config import EncoderConfig, StreamConfig, TrustfixConfig
    from trustfix.trainer.daemon import TrainerDaemon
    from trustfix.trainer.store import TrainerStore

    console = console or Console()
    tasks = make_tasks(seed=0)[:n_tasks]
    with tempfile.TemporaryDirectory(prefix="trustfix-demo-") as tmp:
        trainer, daemon, thread = None, None, None
        if with_trainer:
            daemon = TrainerDaemon(
                Path(tmp) / "trainer.sqlite",
                Path(tmp) / "trainer-checkpoints",
                "tcp://127.0.0.1:0",
                "tcp://127.0.0.1:0",
                TrustfixConfig(encoders=EncoderConfig("hashing", "hashing")),
                StreamConfig(
                    update_every=2, min_samples=1, update_seconds=1.0, update_min_interval_s=0.5
                ),
            )
            thread = threading.Thread(target=daemon.serve_forever, daemon=True)
            thread.start()
            trainer = {
                "trainerEndpoint": daemon.endpoint,
                "trainerPublishEndpoint": daemon.pub_endpoint,
            }
            console.print(
                f"trainer daemon: events on {daemon.endpoint}, versions on {daemon.pub_endpoint}"
            )
        settled, reader = None, None
        if daemon is not None:
            reviewer = pseudonym("demo-reviewer", installation_key(Path(tmp) / "data"))
            reader = TrainerStore(Path(tmp) / "trainer.sqlite")
            expected = 4 * len(tasks)  # accept, score, reject, comment per task (at least)
            settled = functools.partial(trainer_settled, reader, reviewer, expected)
        try:
            data, trust = asyncio.run(review_session(Path(tmp), tasks, console, trainer, settled))
        finally:
            if reader is not None:
                reader.close()
            if daemon is not None:
                daemon.stop()
                thread.join(10)
        counts = {"outbox": summarize_outbox(data, console)}
        if daemon is not None:
            store = TrainerStore(Path(tmp) / "trainer.sqlite")
            versions = [v["version"] for v in store.versions()]
            counts["trainer"] = {
                "suggestion": store.count("suggestion"),
                "feedback": store.count("feedback"),
                "versions": len(versions),
                "latest_version": versions[-1] if versions else None,
                "trust": trust["trust"],
                "alpha": trust["alpha"],
                "beta": trust["beta"],
                "policy_version": trust["policyVersion"],
            }
            console.print(
                f"trainer stored {store.count('suggestion')} suggestions and "
                f"{store.count('feedback')} feedback items; published versions {versions}"
            )
        return counts
