"""Units of a Python file (functions and methods) found with tree-sitter.

tree-sitter recovers from syntax errors, so the units of a file that does not parse as a whole are
still found.  Parses are cached by content; the cached trees are shared and must never be edited
(``tree.copy()`` first).  Lines are 1-based, columns and byte offsets 0-based, offsets count
UTF-8 bytes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

LANGUAGE = Language(tree_sitter_python.language())
"""The tree-sitter Python grammar."""

_PARSER = Parser(LANGUAGE)
_PARSER_LOCK = threading.Lock()
_FUNCTIONS = Query(LANGUAGE, "(function_definition) @function")
_SCOPES = ("function_definition", "class_definition")
_TOP_LEVEL = re.compile(rb"\n(?=(?:async[ \t]+def|def|class)[ \t]|@)")


def parse_bytes(data: bytes, old_tree: Tree | None = None) -> Tree:
    """Parse UTF-8 ``data``; with ``old_tree`` (already ``edit``-ed) the parse is incremental."""
    with _PARSER_LOCK:
        return _PARSER.parse(data, old_tree) if old_tree is not None else _PARSER.parse(data)


@lru_cache(maxsize=512)
def parse(source: str) -> Tree:
    """The syntax tree of ``source``, cached by content (do not edit the returned tree)."""
    return parse_bytes(source.encode())


def has_error_in(node: Node, lo: int, hi: int) -> bool:
    """Whether an ERROR or MISSING node below ``node`` overlaps the byte range [lo, hi).

    Iterative, so 5,000 nested brackets cost no Python recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        if not current.has_error or current.end_byte <= lo or current.start_byte >= hi:
            continue
        if current.is_error or current.is_missing:
            return True
        stack.extend(current.children)
    return False


def region_parses(data: bytes, lo: int, hi: int) -> bool:
    """Whether bytes [lo, hi) of a file are free of syntax errors: in the whole file's parse, or,
    where an error elsewhere swallowed them, parsed on their own (a unit's text parses alone)."""
    if not has_error_in(parse(data.decode()).root_node, lo, hi):
        return True
    return not parse(data[lo:hi].decode()).root_node.has_error


@dataclass(frozen=True)
class Unit:
    """A function or method: its names, kind, 1-based inclusive lines, byte range and text.

    ``source`` is the exact text of the ``def`` (``async def``) statement from its first keyword to
    the end of its body, without decorators or the indentation before ``def``.
    """

    name: str
    qualname: str
    kind: str
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    source: str


def _qualname(node: Node, name: str) -> tuple[str, str]:
    """Python's ``__qualname__`` for a function node, and its kind (``function``/``method``)."""
    parts = [name]
    kind = "function"
    parent = node.parent
    first = True
    while parent is not None:
        if parent.type in _SCOPES:
            outer = parent.child_by_field_name("name")
            outer_name = outer.text.decode() if outer is not None and outer.text else "?"
            if parent.type == "class_definition":
                kind = "method" if first else kind
                parts.append(outer_name)
            else:
                parts.extend(["<locals>", outer_name])
            first = False
        parent = parent.parent
    return ".".join(reversed(parts)), kind


def units(source: str) -> list[Unit]:
    """All functions and methods of ``source`` (nested and async included), in source order."""
    return list(_units(source))


def _collect(root: Node, data: bytes, byte_shift: int, line_shift: int) -> list[Unit]:
    """The sound function definitions under ``root`` (a parse of ``data``), shifted into place."""
    found = []
    for node in QueryCursor(_FUNCTIONS).captures(root).get("function", []):
        name_node = node.child_by_field_name("name")
        if name_node is None or name_node.is_missing or node.child_by_field_name("body") is None:
            continue
        if node.has_error:
            continue
        name = name_node.text.decode() if name_node.text else ""
        qualname, kind = _qualname(node, name)
        found.append(
            Unit(
                name=name,
                qualname=qualname,
                kind=kind,
                start_line=node.start_point.row + 1 + line_shift,
                end_line=node.end_point.row + 1 + line_shift,
                start_byte=node.start_byte + byte_shift,
                end_byte=node.end_byte + byte_shift,
                source=data[node.start_byte : node.end_byte].decode(),
            )
        )
    return found


def _chunks(data: bytes, lo: int, hi: int) -> list[int]:
    """Byte offsets in (lo, hi) where a top-level ``def``, ``async def``, ``class`` or decorator
    line starts: the places where a region swallowed by a syntax error is cut and re-parsed."""
    return [m.start() + 1 for m in _TOP_LEVEL.finditer(data, lo, hi) if m.start() + 1 > lo]


@lru_cache(maxsize=256)
def _units(source: str) -> tuple[Unit, ...]:
    """Cached tuple behind :func:`units`.

    Where tree-sitter's recovery swallows the rest of a file into an ERROR node (an unclosed
    bracket), that region is cut at its top-level definitions and each piece parsed on its own.
    """
    root = parse(source).root_node
    data = source.encode()
    found = _collect(root, data, 0, 0)
    for child in root.children if root.has_error else ():
        if not child.has_error:
            continue
        cuts = [child.start_byte, *_chunks(data, child.start_byte, child.end_byte), child.end_byte]
        for lo, hi in pairwise(cuts):
            piece = data[lo:hi]
            tree = parse_bytes(piece)
            line_shift = data.count(b"\n", 0, lo)
            found.extend(_collect(tree.root_node, piece, lo, line_shift))
    unique = {(u.start_byte, u.end_byte): u for u in found}
    return tuple(sorted(unique.values(), key=lambda u: (u.start_byte, -u.end_byte)))


def unit_at(source: str, line: int, col: int = 0) -> Unit | None:
    """The innermost unit at 1-based ``line`` and 0-based character ``col``, or None.

    A unit covers its whole first line when only indentation precedes ``def``, and the rest of
    its last line when nothing but blanks or a comment follows its end.
    """
    data = source.encode()
    best: Unit | None = None
    for unit in _units(source):
        head_start = data.rfind(b"\n", 0, unit.start_byte) + 1
        head = data[head_start : unit.start_byte].decode()
        start_col = 0 if not head.strip() else len(head)
        tail_end = data.find(b"\n", unit.end_byte)
        tail = data[unit.end_byte : tail_end if tail_end >= 0 else len(data)].decode().strip()
        last_start = data.rfind(b"\n", 0, unit.end_byte) + 1
        end_col = len(data[last_start : unit.end_byte].decode())
        if not tail or tail.startswith("#"):
            end_col = max(col, end_col)
        inside = (unit.start_line, start_col) <= (line, col) <= (unit.end_line, end_col)
        if inside and (best is None or unit.start_byte >= best.start_byte):
            best = unit
    return best


def node_sequence(unit_or_source: Unit | str) -> list[str]:
    """The named syntax-node types of a unit (or a whole source) in pre-order, root excluded.

    A cursor walk, linear in the tree's size at any depth (``Node.parent`` costs the depth)."""
    text = unit_or_source.source if isinstance(unit_or_source, Unit) else unit_or_source
    cursor = parse(text).walk()
    out: list[str] = []
    visited_children = False
    at_root = True
    while True:
        if not visited_children:
            node = cursor.node
            if node is not None and node.is_named and not at_root:
                out.append(node.type)
            at_root = False
            if cursor.goto_first_child():
                continue
        if cursor.goto_next_sibling():
            visited_children = False
            continue
        if not cursor.goto_parent():
            return out
        visited_children = True
