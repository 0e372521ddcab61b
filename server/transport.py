"""The JSON-RPC transport of ``trustfix serve``: framing, triage and dispatch of every message.

pygls' own loop trusts its input: it allocates whatever ``Content-Length`` says, drops requests
whose params fail to deserialise, after ``shutdown``, or that are not JSON, and loses the next
message after a header it does not match.  This module owns that edge and hands pygls only
well-formed, structured messages (``protocol.handle_message``):

- :class:`.framing.FrameDecoder` cuts the byte stream into bodies, refusing bad headers and
  lengths over ``max_message_bytes`` without reading them, and resynchronising after them.
- :class:`Gate` answers everything that cannot reach a handler: -32700 for a body that is not
  JSON, -32600 for a message that is not a JSON-RPC request (or arrives after ``shutdown``),
  -32002 before ``initialize``, -32601 for an unknown method, -32602 with a message for params
  that do not fit the method's types or :mod:`.validation`'s checks.  Every request gets a result
  or an error, and bad input costs one warning line in the log, never a traceback.
- :func:`serve_stdio` and :func:`serve_tcp` run the loop in place of ``start_io``/``start_tcp``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage

from .framing import Body, FrameDecoder, Refusal, frame_message
from .validation import params_problem

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pygls.lsp.server import LanguageServer

    from .settings import ServerSettings

log = logging.getLogger(__name__)

CLIENT_FAULTS = frozenset(
    {
        types.ErrorCodes.InvalidParams,
        types.ErrorCodes.InvalidRequest,
        types.ErrorCodes.MethodNotFound,
        types.ErrorCodes.ParseError,
        types.LSPErrorCodes.RequestCancelled,
    }
)
"""Error codes that describe the client's input, logged as one line without a traceback."""
MAX_ERROR_CHARS = 500
"""Longest error message sent back (cattrs can describe every field of a large message)."""


def _error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "error": {"code": int(code), "message": message[:MAX_ERROR_CHARS]},
    }


class Gate:
    """Triage of decoded messages for one server: answers what no handler can, dispatches the
    rest to pygls, and follows the lifecycle (initialize, shutdown)."""

    def __init__(self, server: LanguageServer, send: Callable[[dict[str, Any]], None]) -> None:
        self.server = server
        self.protocol = server.protocol
        self.converter = server.protocol.fm.converter
        self.send = send
        self.initialized = False
        self.shut_down = False

    def refuse(self, msg_id: Any, code: int, message: str) -> None:
        """Answer with an error (one warning in the log)."""
        log.warning("refused message %r: %s", msg_id, message[:MAX_ERROR_CHARS])
        self.send(_error(msg_id, code, message))

    def frame(self, frame: Body | Refusal) -> None:
        """Handle one frame from the decoder."""
        if isinstance(frame, Refusal):
            self.refuse(None, types.ErrorCodes.ParseError, f"message refused: {frame.reason}")
            return
        try:
            data = json.loads(frame.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            self.refuse(
                None,
                types.ErrorCodes.ParseError,
                f"not a JSON message: {type(error).__name__}: {error}"[:200],
            )
            return
        self.message(data, frame.data)

    def message(self, data: Any, body: bytes) -> None:
        """Triage one decoded message."""
        invalid = types.ErrorCodes.InvalidRequest
        if not isinstance(data, dict):
            self.refuse(None, invalid, "a message must be a JSON object (LSP has no batches)")
            return
        msg_id = data.get("id")
        if "id" in data and (isinstance(msg_id, bool) or not isinstance(msg_id, int | str)):
            self.refuse(None, invalid, "id must be an integer or a string")
            return
        method = data.get("method")
        if data.get("jsonrpc") != "2.0" or ("method" in data and not isinstance(method, str)):
            self.refuse(
                msg_id, invalid, 'not JSON-RPC 2.0: needs "jsonrpc": "2.0" and a string method'
            )
            return
        if method is None:
            self.response(data)
        elif "id" in data:
            self.request(msg_id, method, data, body)
        else:
            self.notification(method, data, body)

    def known(self, method: str) -> bool:
        """Whether the server handles ``method``."""
        fm = self.protocol.fm
        return method in fm.features or method in fm.builtin_features

    def request(self, msg_id: int | str, method: str, data: dict[str, Any], body: bytes) -> None:
        """Check a request and dispatch it, or answer with the error."""
        if self.shut_down:
            self.refuse(
                msg_id,
                types.ErrorCodes.InvalidRequest,
                f"{method}: the server is shutting down (only exit is accepted)",
            )
        elif not self.initialized and method != types.INITIALIZE:
            self.refuse(
                msg_id,
                types.ErrorCodes.ServerNotInitialized,
                f"{method}: the server is not initialized yet",
            )
        elif not self.known(method):
            self.refuse(msg_id, types.ErrorCodes.MethodNotFound, f"method not found: {method}")
        else:
            problem = params_problem(method, data.get("params"), body, request=True)
            message = None if problem else self.structure(method, data, JsonRPCRequestMessage)
            if isinstance(message, str) or problem:
                self.refuse(
                    msg_id,
                    types.ErrorCodes.InvalidParams,
                    f"{method}: invalid params: {problem or message}",
                )
                return
            self.initialized = True
            if method == types.SHUTDOWN:
                self.shut_down = True
            self.dispatch(message)

    def notification(self, method: str, data: dict[str, Any], body: bytes) -> None:
        """Check a notification and dispatch it, or drop it with a warning."""
        if method != types.EXIT and (self.shut_down or not self.initialized):
            log.warning(
                "notification %s dropped: the server is %s",
                method,
                "shutting down" if self.shut_down else "not initialized",
            )
            return
        if not (self.known(method) or method == types.CANCEL_REQUEST):
            log.debug("notification %s has no handler", method)
            return
        problem = params_problem(method, data.get("params"), body, request=False)
        message = None if problem else self.structure(method, data, JsonRPCNotification)
        if isinstance(message, str) or problem:
            log.warning(
                "notification %s dropped: invalid params: %s",
                method,
                (problem or message)[:MAX_ERROR_CHARS],
            )
            return
        self.dispatch(message)

    def response(self, data: dict[str, Any]) -> None:
        """A client's answer to a server request, for pygls to match."""
        if "id" not in data or ("result" not in data and "error" not in data):
            self.refuse(
                data.get("id"),
                types.ErrorCodes.InvalidRequest,
                "a message needs a method (request, notification) or a result or error (response)",
            )
            return
        try:
            message = self.protocol.structure_message(data)
        except JsonRpcException as error:
            log.warning("response %r dropped: %s", data.get("id"), error)
            return
        self.dispatch(message)

    def structure(self, method: str, data: dict[str, Any], fallback: type) -> Any:
        """The typed message, or a description of why ``data`` does not fit its type."""
        kind = self.protocol.get_message_type(method) or fallback
        try:
            return self.converter.structure(data, kind)
        except Exception as error:
            details = (
                cattrs.transform_error(error, path="message")
                if isinstance(error, cattrs.ClassValidationError)
                else [f"{type(error).__name__}: {error}"]
            )
            return "; ".join(details[:4])

    def dispatch(self, message: Any) -> None:
        """Hand a checked message to pygls."""
        try:
            self.protocol.handle_message(message)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("pygls failed on a checked message")


class ClientFaultFilter(logging.Filter):
    """pygls logs every error a handler raises with its traceback; an error about the client's
    input (:data:`CLIENT_FAULTS`) becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite client-fault records; keep every record."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, JsonRpcException) and error.code in CLIENT_FAULTS:
            record.msg = f"{record.getMessage()}: {error.message}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _quiet_client_faults() -> None:
    """Install :class:`ClientFaultFilter` on pygls' protocol logger (once)."""
    pygls_log = logging.getLogger("pygls.protocol.json_rpc")
    if not any(isinstance(f, ClientFaultFilter) for f in pygls_log.filters):
        pygls_log.addFilter(ClientFaultFilter())


async def serve(
    server: LanguageServer,
    settings: ServerSettings,
    read: Callable[[], Awaitable[bytes]],
    writer: Any,
) -> None:
    """Read frames with ``read`` until it returns b"" and run them through a :class:`Gate`;
    replies go through ``writer`` (pygls' writer interface)."""
    server.protocol.set_writer(writer)
    gate = Gate(server, lambda message: writer.write(frame_message(message)))
    decoder = FrameDecoder(settings.max_message_bytes, settings.max_header_bytes)
    _quiet_client_faults()
    while chunk := await read():
        for frame in decoder.feed(chunk):
            gate.frame(frame)
            await asyncio.sleep(0)


def serve_stdio(
    server: LanguageServer,
    settings: ServerSettings,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """Serve LSP on stdin/stdout until the client closes stdin or sends ``exit``."""
    source = stdin or sys.stdin.buffer
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-stdin")
    size = settings.read_chunk_bytes

    async def read() -> bytes:
        return await asyncio.get_running_loop().run_in_executor(reader, source.read1, size)

    try:
        asyncio.run(serve(server, settings, read, StdoutWriter(stdout or sys.stdout.buffer)))
    except BrokenPipeError:
        log.error("the client closed the connection")
    finally:
        reader.shutdown(wait=False)
        server.shutdown()


def serve_tcp(server: LanguageServer, settings: ServerSettings, host: str, port: int) -> None:
    """Serve LSP to TCP clients on ``host:port``."""
    size = settings.read_chunk_bytes

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve(server, settings, lambda: reader.read(size), writer)
        writer.close()

    async def main() -> None:
        listener = await asyncio.start_server(connection, host, port)
        log.info("serving on %s:%d", host, port)
        async with listener:
            await listener.serve_forever()

    asyncio.run(main())
