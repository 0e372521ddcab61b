"""Repair edits of a byte range: every family's sites, deduplicated by resulting source, each
checked to parse, in a stable order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from tree_sitter import Node, Point, Tree

from ..units import has_error_in, parse, parse_bytes
from . import arithmetic, conditions, operators, statements, swaps
from . import replace as replacements
from .core import Context, RepairEdit, Rule, Site

RULES: tuple[Rule, ...] = (
    *operators.RULES,
    *arithmetic.RULES,
    *replacements.RULES,
    *swaps.RULES,
    *conditions.RULES,
    *statements.RULES,
)
FAMILIES: tuple[str, ...] = (
    "comparison",
    "arithmetic",
    "off_by_one",
    "negation",
    "and_or",
    "swap_args",
    "wrong_variable",
    "is_eq",
    "constant",
    "builtin",
    "adjust",
    "replace",
    "swap_operands",
    "condition",
    "return_value",
    "wrap",
    "insert",
)
"""Repair families, in the order used to break ties between edits at the same site."""
_RANK = {name: i for i, name in enumerate(FAMILIES)}
_BY_TYPE: dict[str, tuple[Rule, ...]] = {}
for _rule in RULES:
    for _type in _rule.node_types:
        _BY_TYPE[_type] = (*_BY_TYPE.get(_type, ()), _rule)


def _walk(root: Node, lo: int, hi: int) -> Iterator[Node]:
    """Nodes of ``root`` that overlap [lo, hi), in document order."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.end_byte <= lo or node.start_byte >= hi:
            continue
        yield node
        stack.extend(reversed(node.children))


def sites(
    tree: Tree, data: bytes, lo: int, hi: int, families: Iterable[str] | None = None
) -> list[Site]:
    """Every site of the chosen families (default: all) whose range lies in [lo, hi), padded
    where a replacement would fuse with a neighbouring word, in (position, family, rank) order."""
    allowed = set(FAMILIES if families is None else families)
    unknown = allowed - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown repair families: {sorted(unknown)}")
    ctx = Context(data)
    found = []
    for node in _walk(tree.root_node, lo, hi):
        for rule in _BY_TYPE.get(node.type, ()):
            if allowed.isdisjoint(rule.families):
                continue
            found.extend(
                _padded(data, s)
                for s in rule.sites(node, ctx)
                if s.family in allowed and lo <= s.start and s.end <= hi
            )
    found.sort(key=lambda s: (s.start, s.end, _RANK[s.family], s.rank, s.replacement))
    return found


def _is_word(byte: int) -> bool:
    return chr(byte).isalnum() or byte == ord("_") or byte >= 0x80


def _padded(data: bytes, site: Site) -> Site:
    """The site with a space added where its replacement would fuse with a neighbouring word."""
    value = site.replacement
    if value and site.start > 0 and _is_word(data[site.start - 1]) and _is_word(ord(value[0])):
        value = " " + value
    if value and site.end < len(data) and _is_word(data[site.end]) and _is_word(ord(value[-1])):
        value = value + " "
    return site if value == site.replacement else replace(site, replacement=value)


def _point_after(inserted: bytes, start_point: Point) -> Point:
    """The (row, column) reached after inserting ``inserted`` at ``start_point``."""
    rows = inserted.count(b"\n")
    if rows:
        return Point(start_point.row + rows, len(inserted) - inserted.rfind(b"\n") - 1)
    return Point(start_point.row, start_point.column + len(inserted))


def _point_of(data: bytes, offset: int) -> Point:
    row = data.count(b"\n", 0, offset)
    return Point(row, offset - (data.rfind(b"\n", 0, offset) + 1))


def _parses(tree: Tree, data: bytes, start: int, end: int, new: bytes, lo: int, hi: int) -> bool:
    """Whether ``new`` (``data`` with bytes [start, end) replaced) has no syntax error (within
    [lo, hi) if ``data`` had one), parsed incrementally from ``tree``."""
    inserted_end = len(new) - (len(data) - end)
    start_point = _point_of(data, start)
    edited = tree.copy()
    edited.edit(
        start_byte=start,
        old_end_byte=end,
        new_end_byte=inserted_end,
        start_point=start_point,
        old_end_point=_point_of(data, end),
        new_end_point=_point_after(new[start:inserted_end], start_point),
    )
    root = parse_bytes(new, edited).root_node
    if not tree.root_node.has_error:
        return not root.has_error
    return not has_error_in(root, lo, hi + inserted_end - end)


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """How many bytes ``a`` and ``b`` share at the start (at most ``limit``)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """How many bytes ``a`` and ``b`` share at the end (at most ``limit``)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def edit_parses(source: str, new: str, start_byte: int = 0, end_byte: int | None = None) -> bool:
    """Whether ``new``, ``source`` after one change, has no syntax error (none within the
    range [start_byte, end_byte), shifted by the change, when ``source`` already had one);
    parsed incrementally from ``source``'s cached tree."""
    data, after = source.encode(), new.encode()
    head = _common_prefix(data, after, min(len(data), len(after)))
    tail = _common_suffix(data, after, min(len(data), len(after)) - head)
    hi = len(data) if end_byte is None else end_byte
    return _parses(parse(source), data, head, len(data) - tail, after, start_byte, hi)


def _standalone_edits(
    data: bytes, lo: int, hi: int, cap: int, families: Iterable[str] | None, check: bool
) -> list[RepairEdit]:
    """Edits of a unit that the whole file's parse swallowed into an error: computed on the
    unit's text alone (when that parses) and put back in place."""
    unit = data[lo:hi].decode()
    if parse(unit).root_node.has_error:
        return []
    shift = data.count(b"\n", 0, lo)
    out = []
    for edit in repair_edits(unit, cap=cap, families=families, check=check):
        line = edit.line + shift
        title = f"{edit.title.rsplit(' on line ', 1)[0]} on line {line}"
        new = data[:lo] + edit.source.encode() + data[hi:]
        out.append(RepairEdit(edit.family, line, title, new.decode(), edit.rank))
    return out


def repair_edits(
    source: str,
    start_byte: int = 0,
    end_byte: int | None = None,
    cap: int = 200,
    families: Iterable[str] | None = None,
    check: bool = True,
) -> list[RepairEdit]:
    """Every single-site repair edit within the byte range [start_byte, end_byte).

    Results are deduplicated by resulting source (the original excluded), ordered by site
    position, then family (:data:`FAMILIES` order), then rank, and capped at ``cap``.  With
    ``check`` each parses without ERROR/MISSING nodes (the range's text alone when the file has
    syntax errors); without, the caller checks the ones it keeps.  ``families`` restricts the
    families (default: all of :data:`FAMILIES`).
    """
    data = source.encode()
    hi = len(data) if end_byte is None else min(end_byte, len(data))
    tree = parse(source)
    if end_byte is not None and has_error_in(tree.root_node, start_byte, hi):
        return _standalone_edits(data, start_byte, hi, cap, families, check)
    seen = {data}
    edits: list[RepairEdit] = []
    for found in sites(tree, data, start_byte, hi, families):
        if len(edits) >= cap:
            break
        new = data[: found.start] + found.replacement.encode() + data[found.end :]
        if new in seen:
            continue
        seen.add(new)
        if not check or _parses(tree, data, found.start, found.end, new, start_byte, hi):
            edits.append(
                RepairEdit(found.family, found.line, found.title, new.decode(), found.rank)
            )
    return edits
