"""Verified suggestions: how often the first offer is a correct fix, with and without running the
workspace's tests against the candidates first.

Held-out HumanEval refinement tasks (``split_tasks``' test part) are served through
``trustfix serve``, each module in the workspace beside its tests (``test_<name>.py``, as the
editor demo writes them).  For each task one code-action request at the injected bug's line;
with verification the request is repeated until the server's answer shows verified candidates
(a title with ``✓``/``✗`` or a changed order) or ``--wait`` seconds pass.  The first offer is
applied and judged by the task's tests in the sandbox.  Printed: the share of first offers that
are correct fixes in both runs, and the added time until the verified answer (median, p95).

Run: ``python -m trustfix.bench.bench_verify [--tasks 20] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from trustfix.bench.bench_lsp import percentile, report
from trustfix.bench.editor_demo import apply_text_edit, start_server, test_file


async def first_offers(tasks: list[Any], verify: bool, wait_s: float) -> list[dict[str, Any]]:
    """Serve ``tasks`` in one workspace; per task the first offer's new text and the seconds
    until the answer it came from."""
    out = []
    with tempfile.TemporaryDirectory(prefix="trustfix-verify-") as tmp:
        workdir = Path(tmp)
        for task in tasks:
            (workdir / f"{task.entry_point}.py").write_text(task.buggy)
            (workdir / f"test_{task.entry_point}.py").write_text(test_file(task))
        client = await start_server(
            workdir, {"topK": 3, "telemetry": "off", "verifyCandidates": 5 if verify else 0}
        )
        try:
            for task in tasks:
                uri = (workdir / f"{task.entry_point}.py").as_uri()
                client.text_document_did_open(
                    types.DidOpenTextDocumentParams(
                        types.TextDocumentItem(
                            uri=uri, language_id="python", version=1, text=task.buggy
                        )
                    )
                )
                pos = types.Position(task.bug.line - 1, 4)
                params = types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri),
                    range=types.Range(pos, pos),
                    context=types.CodeActionContext(diagnostics=[]),
                )
                started = time.perf_counter()
                offered = await client.text_document_code_action_async(params)
                first_titles = [a.title for a in offered or []]
                while verify and time.perf_counter() - started < wait_s:
                    titles = [a.title for a in offered or []]
                    if titles != first_titles or any("✓" in t or "✗" in t for t in titles):
                        break
                    await asyncio.sleep(0.25)
                    offered = await client.text_document_code_action_async(params)
                elapsed = time.perf_counter() - started
                text = None
                if offered:
                    (edit,) = offered[0].edit.document_changes
                    text = apply_text_edit(task.buggy, edit.edits[0])
                out.append(
                    {
                        "task": task.id,
                        "text": text,
                        "seconds": elapsed,
                        "title": offered[0].title if offered else None,
                    }
                )
        finally:
            await client.shutdown_async(None)
            client.exit(None)
            await client.stop()
    return out


def run(n_tasks: int, wait_s: float) -> dict[str, Any]:
    """Both runs on the first ``n_tasks`` held-out tasks; the correct share and added time."""
    from trustfix.bench.tasks import make_tasks, split_tasks
    from trustfix.server.sandbox import Sandbox

    tasks = split_tasks(make_tasks(seed=0))[1][:n_tasks]
    results: dict[str, Any] = {"tasks": len(tasks)}
    with Sandbox() as sandbox:
        for name, verify in (("without", False), ("with", True)):
            offers = asyncio.run(first_offers(tasks, verify, wait_s))
            correct = [
                o["text"] is not None and sandbox.run(o["text"], t.tests, t.entry_point).all_passed
                for o, t in zip(offers, tasks, strict=True)
            ]
            seconds = [o["seconds"] for o in offers]
            results[name] = {
                "correct_first": sum(correct) / len(tasks),
                "seconds_p50": statistics.median(seconds),
                "seconds_p95": percentile(seconds, 0.95),
            }
    results["added_seconds_p50"] = (
        results["with"]["seconds_p50"] - results["without"]["seconds_p50"]
    )
    return results


def main(argv: list[str] | None = None) -> None:
    """Print the figures (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20, help="Held-out tasks served.")
    parser.add_argument(
        "--wait", type=float, default=60.0, help="Seconds to wait for verified candidates per task."
    )
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args(argv)
    report(run(args.tasks, args.wait), args.json)


if __name__ == "__main__":
    main()
