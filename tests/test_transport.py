"""The JSON-RPC transport without a process: framing, resynchronisation, triage, validation."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from trustfix.server.framing import Body, FrameDecoder, Refusal, frame_message
from trustfix.server.transport import ClientFaultFilter, Gate
from trustfix.server.validation import params_problem

CAP = 1000


def frame(message: dict[str, Any]) -> bytes:
    return frame_message(message)


def request(msg_id: int, method: str = "textDocument/hover", params: Any = None) -> dict:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


def bodies(frames: list[Body | Refusal]) -> list[dict[str, Any]]:
    return [json.loads(f.data) for f in frames if isinstance(f, Body)]


def test_well_formed_frames_split_anywhere() -> None:
    wire = frame(request(1)) + frame(request(2)) + frame(request(3))
    for step in (1, 7, len(wire)):
        decoder = FrameDecoder(CAP, 100)
        out = []
        for i in range(0, len(wire), step):
            out += decoder.feed(wire[i : i + step])
        assert [m["id"] for m in bodies(out)] == [1, 2, 3]
        assert not [f for f in out if isinstance(f, Refusal)]


@pytest.mark.parametrize(
    "header",
    [
        b"content-length: %d\r\n\r\n",
        b"Content-Length: %d\n\n",
        b"CONTENT-LENGTH:%d \r\n\n",
        b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n",
    ],
)
def test_header_variants_are_accepted(header: bytes) -> None:
    body = json.dumps(request(7)).encode()
    out = FrameDecoder(CAP, 200).feed(header % len(body) + body + frame(request(8)))
    assert [m["id"] for m in bodies(out)] == [7, 8]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"Content-Length: 1000000000000\r\n\r\n{}", "over the cap"),
        (b"Content-Length: 1" + b"0" * 30 + b"\r\n\r\n{}", "over the cap"),
        (b"Content-Length: %d\r\n\r\n{}" % (CAP + 1), "over the cap"),
        (b"Content-Length: -5\r\n\r\n{}", "not a decimal"),
        (b"Content-Length: 0x20\r\n\r\n{}", "not a decimal"),
        (b"Content-Type: x\r\n\r\n{}", "without Content-Length"),
        (b"\x00\xff garbage\r\n", "not a header line"),
        (b"Content-Length: 2\r\nX-A: " + b"a" * 300, "header block over"),
    ],
)
def test_bad_headers_are_refused_and_the_next_message_kept(bad: bytes, reason: str) -> None:
    decoder = FrameDecoder(CAP, 200)
    out = decoder.feed(bad) + decoder.feed(frame(request(9)))
    refusals = [f for f in out if isinstance(f, Refusal)]
    assert refusals and reason in refusals[0].reason
    assert bodies(out) == [request(9)]


def test_refused_length_is_never_buffered() -> None:
    decoder = FrameDecoder(CAP, 200)
    decoder.feed(b"Content-Length: 999999999999\r\n\r\n")
    for _ in range(50):  # a flood of body bytes without a header: kept to a few bytes
        assert decoder.feed(b"x" * 10_000) == []
        assert len(decoder._buffer) < 20
    assert bodies(decoder.feed(frame(request(3)))) == [request(3)]


def test_resync_finds_a_header_glued_to_garbage() -> None:
    good = frame(request(4))
    out = FrameDecoder(CAP, 200).feed(b'Content-Length: 3\r\n\r\n{"a": 1}' + good)
    assert [f.data for f in out if isinstance(f, Body)] == [b'{"a', good.split(b"\r\n\r\n")[1]]
    assert len([f for f in out if isinstance(f, Refusal)]) == 1


class Sent:
    """What a Gate sent back, and what reached pygls."""

    def __init__(self) -> None:
        self.server = LanguageServer("test", "0")
        self.replies: list[dict[str, Any]] = []
        self.gate = Gate(self.server, self.replies.append)
        self.dispatched: list[Any] = []
        self.gate.dispatch = self.dispatched.append  # type: ignore[method-assign]

        @self.server.feature(types.TEXT_DOCUMENT_HOVER)
        def hover(ls: LanguageServer, params: types.HoverParams) -> None:
            return None

    def body(self, raw: bytes) -> dict[str, Any]:
        self.gate.frame(Body(raw))
        return self.replies[-1]

    def send(self, message: Any) -> dict[str, Any] | None:
        before = len(self.replies)
        self.gate.frame(Body(json.dumps(message).encode()))
        return self.replies[-1] if len(self.replies) > before else None


HOVER = {"textDocument": {"uri": "file:///a.py"}, "position": {"line": 1, "character": 2}}


def test_gate_answers_what_no_handler_can() -> None:
    sent = Sent()
    assert sent.body(b'{"jsonrpc": "2.0", "id": 1, "meth')["error"]["code"] == -32700
    assert sent.body(b'{"x": "\xff"}')["error"]["code"] == -32700
    assert sent.body(b"[" * 100_000 + b"]" * 100_000)["error"]["code"] == -32700
    assert sent.send([request(1)]) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": -32600,
            "message": "a message must be a JSON object (LSP has no batches)",
        },
    }
    assert sent.send({"jsonrpc": "2.0", "id": {}, "method": "x"})["error"]["code"] == -32600
    assert sent.send(request(2, "textDocument/hover", HOVER))["error"]["code"] == -32002
    assert sent.send({"jsonrpc": "2.0", "method": "initialized", "params": {}}) is None
    assert sent.dispatched == []

    assert sent.send(request(3, "initialize", {"capabilities": {}})) is None
    assert sent.send(request(4, "foo/bar"))["error"] == {
        "code": -32601,
        "message": "method not found: foo/bar",
    }
    assert sent.send(request(5, "textDocument/hover", HOVER)) is None
    null = sent.send(request(6, "textDocument/hover", None))["error"]
    assert null["code"] == -32602 and "textDocument/hover: invalid params" in null["message"]
    assert sent.send(request(7, "shutdown")) is None
    late = sent.send(request(8, "textDocument/hover", HOVER))["error"]
    assert late["code"] == -32600 and "shutting down" in late["message"]
    assert sent.send({"jsonrpc": "2.0", "method": "exit"}) is None
    assert [m.method for m in sent.dispatched] == [
        "initialize",
        "textDocument/hover",
        "shutdown",
        "exit",
    ]


@pytest.mark.parametrize(
    ("position", "message"),
    [
        ({"line": -1, "character": 0}, "params.position.line must be in 0..2147483647, got -1"),
        ({"line": 2**70, "character": 0}, "got a 22-digit number"),
        ({"line": "4", "character": 0}, "params.position.line must be an integer, got str"),
        ({"line": 1, "character": 1.5}, "params.position.character must be an integer"),
        ({"line": True, "character": 0}, "must be an integer, got bool"),
    ],
)
def test_positions_are_checked_strictly(position: dict, message: str) -> None:
    params = {"textDocument": {"uri": "file:///a.py"}, "position": position}
    body = json.dumps(params).encode()
    problem = params_problem("textDocument/hover", params, body, request=True)
    assert problem is not None and message in problem


def test_lone_surrogates_refused_in_requests_repaired_in_documents() -> None:
    args = {"command": "trustfix.comment", "arguments": ["id", "\ud800 hi"]}
    body = json.dumps(args).encode()
    assert params_problem("workspace/executeCommand", args, body, request=True) == (
        "params.arguments[1] holds a lone UTF-16 surrogate (not valid Unicode)"
    )
    text = "def f():\n    return '\udfff'\n"
    opened = {
        "textDocument": {"uri": "file:///a.py", "languageId": "python", "version": 1, "text": text}
    }
    body = json.dumps(opened).encode()
    assert params_problem("textDocument/didOpen", opened, body, request=False) is None
    repaired = opened["textDocument"]["text"]
    assert repaired == "def f():\n    return '\ufffd'\n"
    assert len(repaired.encode("utf-16-le")) == len(text.encode("utf-16-le", "surrogatepass"))


def test_resolve_needs_a_string_suggestion_id() -> None:
    params = {"title": "t", "data": {"suggestionId": {}}}
    assert params_problem("codeAction/resolve", params, b"{}", request=True) == (
        "params.data.suggestionId must be a string"
    )
    assert (
        params_problem(
            "codeAction/resolve", {"title": "t", "data": {"suggestionId": "a"}}, b"{}", request=True
        )
        is None
    )


def test_client_faults_are_logged_without_a_traceback() -> None:
    try:
        raise JsonRpcInvalidParams("argument 2 must be a int")
    except JsonRpcInvalidParams:
        import sys

        record = logging.LogRecord(
            "pygls.protocol.json_rpc",
            logging.ERROR,
            __file__,
            1,
            'Exception occurred for message "%s"',
            ("7",),
            sys.exc_info(),
        )
    assert ClientFaultFilter().filter(record)
    assert record.exc_info is None and record.levelname == "WARNING"
    assert record.getMessage() == 'Exception occurred for message "7": argument 2 must be a int'
