"""A seeded, bounded fuzz test of ``trustfix serve`` on stdio, driven by a raw LSP client.

Each batch sends hostile inputs of every category (framing, JSON, params, unknown methods,
hostile documents), then a valid code action.  Asserted: the server never exits, every request
is answered within a deadline, its peak resident memory stays under a bound, and the valid code
action is still served after each batch.  ``make test`` runs ``TRUSTFIX_FUZZ_BATCHES`` (default
10) batches; a longer run::

    TRUSTFIX_FUZZ_BATCHES=200 TRUSTFIX_FUZZ_SEED=1 .venv/bin/python -m pytest \
        tests/test_fuzz_lsp.py -q -s -p no:cacheprovider -o timeout=0

prints the inputs tried per category and what came back.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BATCHES = int(os.environ.get("TRUSTFIX_FUZZ_BATCHES", "10"))
"""Hostile batches sent (each followed by a valid code action)."""
SEED = int(os.environ.get("TRUSTFIX_FUZZ_SEED", "0"))
"""Seed of the batch composition."""
DEADLINE_S = 30.0
"""Longest wait for any answer (a loaded 2-core machine; answers take well under a second)."""
PROBE_DEADLINE_S = 60.0
"""Longest wait for the first valid code action (the policy loads torch first)."""
PEAK_RSS_MB = 1500.0
"""Bound on the server's peak resident memory (``VmHWM``): torch and the ranker take ~500 MB."""
CAP = 64 * 2**20
"""The server's default ``max_message_bytes``."""

GOOD = """import os


def add(a, b):
    if a == None:
        return b
    return a + b
"""
GOOD_URI = "file:///fuzz/good.py"
GOOD_LINE = 4  # 0-based line of "    if a == None:"


class Wire:
    """A raw LSP client of a ``trustfix serve`` subprocess: bytes out, parsed frames in."""

    def __init__(self, tmp_path: Path) -> None:
        command = [str(Path(sys.executable).parent / "trustfix"), "serve", "--log-level", "WARNING"]
        self.log_path = tmp_path / "server.log"
        env = {**os.environ, "TRUSTFIX_DATA_DIR": str(tmp_path / "data")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
            )
        self.replies: dict[Any, dict[str, Any]] = {}
        self.anonymous: list[dict[str, Any]] = []
        """Error replies with a null id (refused frames, bodies that are not JSON)."""
        self.ready = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            message = json.loads(stream.read(length or 0))
            with self.ready:
                if "method" in message:
                    pass  # notifications (status, diagnostics, log messages)
                elif message.get("id") is None:
                    self.anonymous.append(message)
                else:
                    self.replies[message["id"]] = message
                self.ready.notify_all()

    def raw(self, data: bytes) -> None:
        """Write bytes as they are."""
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        """Write one well-framed message."""
        body = json.dumps(message).encode()
        self.raw(b"Content-Length: %d\r\n\r\n%b" % (len(body), body))

    def new_id(self) -> int:
        """A fresh request id."""
        self.next_id += 1
        return self.next_id

    def request(self, method: str, params: Any = None) -> int:
        """Send a request; its id."""
        msg_id = self.new_id()
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def notify(self, method: str, params: Any) -> None:
        """Send a notification."""
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait(self, msg_id: Any, deadline_s: float = DEADLINE_S) -> dict[str, Any]:
        """The reply to ``msg_id``; fails the test when none comes within ``deadline_s``."""
        end = time.monotonic() + deadline_s
        with self.ready:
            while msg_id not in self.replies:
                left = end - time.monotonic()
                assert self.process.poll() is None, f"server exited ({self.process.returncode})"
                assert left > 0, f"no reply to request {msg_id} within {deadline_s} s"
                self.ready.wait(min(left, 0.5))
            return self.replies.pop(msg_id)

    def memory_mb(self, field: str = "VmHWM") -> float:
        """The server's resident memory (``VmRSS``) or its peak so far (``VmHWM``), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"{field} not in /proc status")

    def close(self) -> None:
        """Kill the server if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def code_action_params(uri: str, line: Any, character: Any = 8) -> dict[str, Any]:
    """``textDocument/codeAction`` params at one position."""
    position = {"line": line, "character": character}
    return {
        "textDocument": {"uri": uri},
        "range": {"start": position, "end": position},
        "context": {"diagnostics": []},
    }


def open_params(uri: str, text: str, language: str = "python") -> dict[str, Any]:
    """``textDocument/didOpen`` params."""
    return {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}


def probe(wire: Wire, deadline_s: float = DEADLINE_S) -> list[dict[str, Any]]:
    """The valid code action on the good document: its actions (fails when there are none)."""
    reply = wire.wait(
        wire.request("textDocument/codeAction", code_action_params(GOOD_URI, GOOD_LINE)), deadline_s
    )
    assert "result" in reply, reply
    assert reply["result"], "no code action offered on the good document"
    return reply["result"]


def hostile_documents(rng: random.Random) -> dict[str, str]:
    """Document texts an adversary opens (name -> text)."""
    body = "\n".join(f"def f{i}(x):\n    return x == None\n" for i in range(20))
    functions = "".join(
        f"def g{i}(a):\n    if a == None:\n        return 1\n    return a\n\n"
        for i in range(13_000)
    )
    return {
        "binary bytes": "".join(chr(rng.randrange(256)) for _ in range(4000)),
        "non-UTF-8 read as Latin-1": bytes(rng.randrange(128, 256) for _ in range(4000)).decode(
            "latin-1"
        ),
        "5 MB": "def big(x):\n    return x\n" + "# " + "y" * 5_000_000 + "\n",
        "990 KB of functions": functions[:990_000],
        "150 KB of functions": functions[:150_000],
        "5,000 nested parentheses": "def f():\n    return " + "(" * 5000 + "1" + ")" * 5000,
        "3,000 nested lists": "def f():\n    return " + "[" * 3000 + "]" * 3000 + "\n",
        "50,000-term expression": "def f():\n    return " + "+".join(["1"] * 50_000) + "\n",
        "20,000 nots": "def f(y):\n    return " + "not " * 20_000 + "y\n",
        "20,000 attributes": "def f(y):\n    return y" + ".a" * 20_000 + "\n",
        "lone surrogates": "def f(x):\n    return '\ud800' if x == None else '\udfff'\n",
        "syntax errors": "def f(:\n    return ((\n" + body + "\nclass\n  def g(x) return x ==\n",
        "200 nested blocks": "def f(x):\n"
        + "".join(" " * i + "if x:\n" for i in range(1, 200))
        + " " * 200
        + "pass\n",
        "CR-only line ends": body.replace("\n", "\r"),
    }


class Fuzzer:
    """Sends hostile inputs, records what came back per category."""

    def __init__(self, wire: Wire, rng: random.Random) -> None:
        self.wire = wire
        self.rng = rng
        self.tried: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.documents = hostile_documents(rng)

    def expect(self, category: str, msg_id: Any) -> dict[str, Any]:
        """Wait for the answer to one hostile request and record its kind."""
        reply = self.wire.wait(msg_id)
        self.tried[category] += 1
        kind = f"error {reply['error']['code']}" if "error" in reply else "result"
        self.outcomes[category][kind] += 1
        if "error" in reply:
            assert reply["error"]["message"], reply
            assert reply["error"]["code"] != -32603, f"internal error: {reply}"
        return reply

    def refused_then_served(self, category: str, raw: bytes) -> None:
        """Send bad bytes, then a valid request that must still be answered; record the errors
        with a null id that came back before its answer (replies arrive in order)."""
        before = len(self.wire.anonymous)
        self.wire.raw(raw)
        reply = self.wire.wait(
            self.wire.request(
                "textDocument/hover",
                {"textDocument": {"uri": GOOD_URI}, "position": {"line": 0, "character": 0}},
            )
        )
        assert "result" in reply, f"{category}: the next message was lost: {reply}"
        self.tried[category] += 1
        codes = sorted({m["error"]["code"] for m in self.wire.anonymous[before:]})
        refused = f"error {'/'.join(map(str, codes))} (null id)" if codes else "accepted"
        self.outcomes[category][f"{refused}, next request served"] += 1

    def framing(self) -> None:
        """Headers pygls rejects or trusts blindly; each is followed by a valid request."""
        msg_id = self.wire.new_id()
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "method": "textDocument/hover",
                "params": {
                    "textDocument": {"uri": GOOD_URI},
                    "position": {"line": 1, "character": 0},
                },
            }
        ).encode()
        cases = {
            "length 10^12": b"Content-Length: 1000000000000\r\n\r\n{}",
            "length 10^30": b"Content-Length: " + b"1" + b"0" * 30 + b"\r\n\r\n{}",
            "length cap + 1": b"Content-Length: %d\r\n\r\n{}" % (CAP + 1),
            "length -5": b"Content-Length: -5\r\n\r\n{}",
            "length 0x20": b"Content-Length: 0x20\r\n\r\n{}",
            "no length": b"Content-Type: application/json\r\n\r\n{}",
            "garbage line": b"\x00\xff garbage \x01\r\n",
            "header with no end": b"Content-Length: 2\r\nX-A: " + b"a" * 10_000,
            "length too short": b'Content-Length: 3\r\n\r\n{"jsonrpc": "2.0"}',
        }
        name = self.rng.choice(sorted(cases))
        self.refused_then_served(f"framing: {name}", cases[name])
        accepted = {
            "lowercase content-length": b"content-length: %d\r\n\r\n%b" % (len(body), body),
            "LF-only line ends": b"Content-Length: %d\n\n%b" % (len(body), body),
            "extra Content-Type": b"Content-Length: %d\r\nContent-Type: application/"
            b"vscode-jsonrpc; charset=utf-8\r\n\r\n%b" % (len(body), body),
        }
        name = self.rng.choice(sorted(accepted))
        self.wire.raw(accepted[name])
        reply = self.expect(f"framing: {name}", msg_id)
        assert "result" in reply, reply

    def json_bodies(self) -> None:
        """Bodies that are not JSON-RPC requests; each answered with a null-id error."""
        cases = {
            "truncated JSON": b'{"jsonrpc": "2.0", "id": 1, "meth',
            "non-UTF-8 body": b'{"jsonrpc": "2.0", "method": "\xff\xfe"}',
            "100,000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
            "a batch (array)": b'[{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}]',
            "a number": b"42",
            "id an object": b'{"jsonrpc": "2.0", "id": {}, "method": "shutdown"}',
            "method a number": b'{"jsonrpc": "2.0", "id": "m", "method": 5}',
        }
        name = self.rng.choice(sorted(cases))
        body = cases[name]
        frame = b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        if name == "method a number":
            self.wire.raw(frame)
            self.expect(f"JSON: {name}", "m")
        else:
            self.refused_then_served(f"JSON: {name}", frame)

    def params(self) -> None:
        """Requests with missing or wrong-typed params."""
        good = code_action_params(GOOD_URI, GOOD_LINE)
        cases: dict[str, tuple[str, Any]] = {
            "codeAction params null": ("textDocument/codeAction", None),
            "codeAction params []": ("textDocument/codeAction", []),
            "codeAction no range": (
                "textDocument/codeAction",
                {k: v for k, v in good.items() if k != "range"},
            ),
            "position as strings": (
                "textDocument/codeAction",
                code_action_params(GOOD_URI, "4", "8"),
            ),
            "line -1": ("textDocument/codeAction", code_action_params(GOOD_URI, -1)),
            "line 2^70": ("textDocument/codeAction", code_action_params(GOOD_URI, 2**70)),
            "character 1.5": (
                "textDocument/hover",
                {"textDocument": {"uri": GOOD_URI}, "position": {"line": 1, "character": 1.5}},
            ),
            "hover without position": ("textDocument/hover", {"textDocument": {"uri": GOOD_URI}}),
            "resolve without title": ("codeAction/resolve", {"data": {"suggestionId": "x"}}),
            "resolve suggestionId an object": (
                "codeAction/resolve",
                {"title": "t", "data": {"suggestionId": {}}},
            ),
            "unknown command": ("workspace/executeCommand", {"command": "rm -rf", "arguments": []}),
            "comment with a lone surrogate": (
                "workspace/executeCommand",
                {"command": "trustfix.comment", "arguments": ["nope", "\ud800 hi"]},
            ),
            "rate score as string": (
                "workspace/executeCommand",
                {"command": "trustfix.rate", "arguments": ["nope", "5"]},
            ),
            "didOpen as a request": ("textDocument/didOpen", {"textDocument": 5}),
        }
        for name in self.rng.sample(sorted(cases), 4):
            method, params = cases[name]
            reply = self.expect(f"params: {name}", self.wire.request(method, params))
            assert "error" in reply or name == "didOpen as a request", reply

    def unknown(self) -> None:
        """Methods the server does not have."""
        name = self.rng.choice(["foo/bar", "$/unknownRequest", "textDocument/completion"])
        reply = self.expect("unknown method", self.wire.request(name, {}))
        assert reply.get("error", {}).get("code") == -32601, reply

    def documents_batch(self) -> None:
        """Open a hostile document, ask for actions and hover at random (also out-of-range)
        positions, close it."""
        name = self.rng.choice(sorted(self.documents))
        text = self.documents[name]
        uri = f"file:///fuzz/{self.rng.randrange(10**6)}.py"
        self.wire.notify("textDocument/didOpen", open_params(uri, text))
        lines = text.count("\n") + 1
        for line in (self.rng.randrange(lines), lines + 5, 0):
            character = self.rng.choice([0, 8, 10**6])
            self.expect(
                f"document: {name}",
                self.wire.request(
                    "textDocument/codeAction", code_action_params(uri, line, character)
                ),
            )
            self.expect(
                f"document: {name}",
                self.wire.request(
                    "textDocument/hover",
                    {
                        "textDocument": {"uri": uri},
                        "position": {"line": line, "character": character},
                    },
                ),
            )
        self.wire.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def batch(self) -> None:
        """One batch: every category, in a random order."""
        parts: list[Callable[[], None]] = [
            self.framing,
            self.json_bodies,
            self.params,
            self.unknown,
            self.documents_batch,
        ]
        self.rng.shuffle(parts)
        for part in parts:
            part()

    def report(self) -> str:
        """A table of inputs tried and outcomes per category."""
        rows = [f"{'category':48} {'tried':>5}  outcome"]
        for category in sorted(self.tried):
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(self.outcomes[category].items()) if n)
            rows.append(f"{category:48} {self.tried[category]:>5}  {kinds}")
        return "\n".join(rows)


def edited_beside_a_large_document(wire: Wire, documents: dict[str, str]) -> float:
    """Seconds to answer a code action on the small document, just edited, while a 150 KB
    document opened a moment before is being analysed for its diagnostics."""
    wire.notify(
        "textDocument/didOpen",
        open_params("file:///fuzz/large.py", documents["150 KB of functions"]),
    )
    time.sleep(1.0)  # past the debounce: the large document's ranking is under way
    edited = GOOD.replace("import os", f"import os  # edited {time.time()}")
    wire.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": GOOD_URI, "version": 2}, "contentChanges": [{"text": edited}]},
    )
    asked = time.monotonic()
    probe(wire)
    return time.monotonic() - asked


@pytest.mark.slow
@pytest.mark.timeout(max(120, BATCHES * 15))
def test_fuzz_serve_stdio(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    started = time.monotonic()
    try:
        init = wire.wait(
            wire.request(
                "initialize",
                {
                    "processId": None,
                    "rootUri": None,
                    "capabilities": {
                        "textDocument": {
                            "codeAction": {
                                "codeActionLiteralSupport": {
                                    "codeActionKind": {"valueSet": ["refactor.rewrite"]}
                                }
                            }
                        }
                    },
                    "initializationOptions": {"reviewerId": "fuzz", "debounce": 0.05},
                },
            )
        )
        assert "result" in init, init
        wire.notify("initialized", {})
        wire.notify("textDocument/didOpen", open_params(GOOD_URI, GOOD))
        probe(wire, PROBE_DEADLINE_S)
        fuzzer = Fuzzer(wire, random.Random(SEED))
        probes = []
        for _ in range(BATCHES):
            fuzzer.batch()
            asked = time.monotonic()
            probe(wire)
            probes.append(time.monotonic() - asked)
            assert wire.memory_mb() < PEAK_RSS_MB, f"peak RSS {wire.memory_mb():.0f} MB"
        beside_large = edited_beside_a_large_document(wire, fuzzer.documents)
        late = wire.request("shutdown")
        assert wire.wait(late) == {"jsonrpc": "2.0", "id": late, "result": None}
        after = wire.wait(
            wire.request(
                "textDocument/hover",
                {"textDocument": {"uri": GOOD_URI}, "position": {"line": 0, "character": 0}},
            )
        )
        assert after["error"]["code"] == -32600, after
        peak = wire.memory_mb()
        wire.notify("exit", None)
        assert wire.process.wait(30) == 0
    finally:
        wire.close()
    log = wire.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    print(
        f"\n{BATCHES} batches, seed {SEED}, {sum(fuzzer.tried.values())} hostile requests "
        f"answered, {len(wire.anonymous)} null-id errors, peak RSS {peak:.0f} MB, "
        f"{time.monotonic() - started:.0f} s; valid code action after each batch: median "
        f"{sorted(probes)[len(probes) // 2]:.2f} s, max {max(probes):.2f} s; on a freshly edited "
        f"small file while a 150 KB file is analysed: {beside_large:.2f} s\n{fuzzer.report()}"
    )
