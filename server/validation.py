"""Checks of a JSON-RPC message's raw ``params`` that the LSP types do not make.

lsprotocol's converter turns ``"5"`` into the integer 5 and accepts lone UTF-16 surrogates in
strings, which the rest of trustfix cannot encode.  These checks run on the decoded JSON before
it is structured: positions must be integers in the LSP's ``uinteger`` range; a request's strings
must be valid Unicode (an invalid-params error names the first bad one); a notification's
strings (document text from ``didOpen``/``didChange``) are repaired instead, each lone surrogate
replaced by U+FFFD, which keeps every line, column and UTF-16 offset where it was.
"""

from __future__ import annotations

import re
from typing import Any

from lsprotocol import types

UINTEGER_MAX = 2**31 - 1
"""The LSP's ``uinteger`` upper bound (positions are 0-based lines and UTF-16 columns)."""
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""One UTF-16 surrogate code point: in a Python string decoded from JSON, always a lone one."""
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_POSITION_KEYS = ("line", "character")


def _nodes(value: Any, path: str) -> list[tuple[str, Any, Any, Any]]:
    """Every (path, value, container, key) below ``value``, iteratively (no recursion)."""
    out: list[tuple[str, Any, Any, Any]] = []
    stack: list[tuple[str, Any, Any, Any]] = [(path, value, None, None)]
    while stack:
        item = stack.pop()
        out.append(item)
        where, node = item[0], item[1]
        if isinstance(node, dict):
            stack.extend(reversed([(f"{where}.{k}", v, node, k) for k, v in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{where}[{i}]", v, node, i) for i, v in enumerate(node)]))
    return out


def _position_problem(where: str, node: dict[str, Any]) -> str | None:
    for key in _POSITION_KEYS:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where}.{key} must be an integer, got {type(value).__name__}"
        if not 0 <= value <= UINTEGER_MAX:
            shown = str(value) if abs(value) < 10**12 else f"a {len(str(value))}-digit number"
            return f"{where}.{key} must be in 0..{UINTEGER_MAX}, got {shown}"
    return None


def _resolve_problem(params: Any) -> str | None:
    """``codeAction/resolve``: trustfix's ``data.suggestionId`` must be a string."""
    data = params.get("data") if isinstance(params, dict) else None
    if isinstance(data, dict) and not isinstance(data.get("suggestionId", ""), str):
        return "params.data.suggestionId must be a string"
    return None


def params_problem(method: str, params: Any, body: bytes, *, request: bool) -> str | None:
    """What is wrong with a message's raw ``params`` (decoded from ``body``), or None.

    Lone surrogates are repaired in place in a notification and are the problem in a request.
    The walk over ``params`` only happens when ``body`` holds a position or a surrogate escape,
    so a large document costs two byte searches.
    """
    surrogates = _ESCAPED_SURROGATE.search(body) is not None
    if surrogates or b'"character"' in body:
        problem = _walk_problem(params, request=request, surrogates=surrogates)
        if problem:
            return problem
    if method == types.CODE_ACTION_RESOLVE:
        return _resolve_problem(params)
    return None


def _walk_problem(params: Any, *, request: bool, surrogates: bool) -> str | None:
    """The first bad position or (in a request) string under ``params``; repairs the strings of
    a notification."""
    for where, node, container, key in _nodes(params, "params"):
        if isinstance(node, dict) and all(k in node for k in _POSITION_KEYS):
            problem = _position_problem(where, node)
            if problem:
                return problem
        elif surrogates and isinstance(node, str) and LONE_SURROGATE.search(node):
            if request:
                return f"{where} holds a lone UTF-16 surrogate (not valid Unicode)"
            repaired = LONE_SURROGATE.sub("\ufffd", node)
            if container is None:
                return "params must not be a bare string"
            container[key] = repaired
    return None
