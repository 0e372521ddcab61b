"""LSP's base protocol framing, without I/O: ``Content-Length`` headers and the bodies they
announce.

:class:`FrameDecoder` cuts a byte stream into bodies.  Header names are matched
case-insensitively, lines may end in CRLF or LF, the length must be plain decimal digits and at
most ``max_body``; a bad header block is refused without reading its body, and the stream is
resynchronised at the next ``Content-Length:``, wherever it starts, so no later message is lost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TOKEN = b"content-length:"
"""The header that starts every message (matched case-insensitively when resynchronising)."""
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110 token): anything else on a header line is not a header."""


@dataclass(frozen=True)
class Body:
    """One message body, cut out of the stream by its ``Content-Length``."""

    data: bytes


@dataclass(frozen=True)
class Refusal:
    """A header block that was refused; the stream was resynchronised after it."""

    reason: str


class FrameDecoder:
    """Bytes in, :class:`Body` and :class:`Refusal` frames out (no I/O).

    Memory stays under ``max_header + max_body + one chunk``: a refused header's body is
    never buffered, only scanned past for the next ``Content-Length:``.
    """

    def __init__(self, max_body: int, max_header: int) -> None:
        self.max_body = max_body
        self.max_header = max_header
        self._buffer = bytearray()
        self._length: int | None = None
        """``Content-Length`` of the header block being read."""
        self._header_bytes = 0
        self._body: int | None = None
        """Bytes of body still to come once the header block ended."""
        self._resync = False

    def feed(self, data: bytes) -> list[Body | Refusal]:
        """Frames completed by ``data``."""
        self._buffer += data
        out: list[Body | Refusal] = []
        while True:
            if self._resync and not self._find_token():
                return out
            if self._body is not None:
                if len(self._buffer) < self._body:
                    return out
                out.append(Body(bytes(self._buffer[: self._body])))
                del self._buffer[: self._body]
                self._body = None
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._header_bytes + len(self._buffer) > self.max_header:
                    out.append(self._refuse(f"header block over {self.max_header} bytes"))
                    continue
                return out
            refusal = self._header_line(bytes(self._buffer[:end]).rstrip(b"\r"), end + 1)
            if refusal is not None:
                out.append(refusal)

    def _find_token(self) -> bool:
        """Drop bytes up to the next ``Content-Length:``; False while none is in the buffer."""
        at = self._buffer.lower().find(TOKEN)
        if at < 0:
            del self._buffer[: max(0, len(self._buffer) - len(TOKEN) + 1)]
            return False
        del self._buffer[:at]
        self._resync = False
        return True

    def _refuse(self, reason: str) -> Refusal:
        """Refuse the header block being read; resynchronise past its first byte."""
        del self._buffer[:1]
        self._length, self._header_bytes, self._resync = None, 0, True
        return Refusal(reason)

    def _header_line(self, line: bytes, size: int) -> Refusal | None:
        """Take one header line (``size`` bytes with its end); a refusal leaves it buffered."""
        if self._header_bytes + size > self.max_header:
            return self._refuse(f"header block over {self.max_header} bytes")
        if not line.strip():
            del self._buffer[:size]
            if self._length is None:
                if self._header_bytes:
                    self._header_bytes = 0
                    self._resync = True
                    return Refusal("header block without Content-Length")
                return None
            self._body, self._length, self._header_bytes = self._length, None, 0
            return None
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name.strip()):
            return self._refuse(f"not a header line: {line[:40]!r}")
        if name.strip().lower() == TOKEN[:-1]:
            digits = value.strip()
            if not digits.isdigit():
                return self._refuse(f"Content-Length is not a decimal number: {digits[:40]!r}")
            if len(digits) > 20 or int(digits) > self.max_body:
                return self._refuse(
                    f"Content-Length {digits[:24].decode()} is over the cap "
                    f"of {self.max_body} bytes"
                )
            self._length = int(digits)
        del self._buffer[:size]
        self._header_bytes += size
        return None


def frame_message(message: dict[str, Any]) -> bytes:
    """``message`` with its ``Content-Length`` header, as sent on the wire."""
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
