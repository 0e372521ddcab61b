"""Style violations for bench tasks: ruff's count of them, and injections that each add one.

Each injection yields whole new sources with exactly one more violation that ruff flags
(pycodestyle's E and W rules, counted with ``--isolated`` so the count is the same on every
machine); :func:`style_options` orders them for a seeded draw.
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import random
import subprocess
import tempfile
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ruff.__main__ import find_ruff_bin

STYLE_RULES = "E,W"
"""ruff rule selection counted as style violations (pycodestyle errors and warnings)."""


def style_counts(sources: Sequence[str]) -> list[int]:
    """ruff E/W violations of each source (``--isolated``: the same count on every machine)."""
    if not sources:
        return []
    with tempfile.TemporaryDirectory(prefix="trustfix-style-") as tmp:
        for i, src in enumerate(sources):
            Path(tmp, f"s{i}.py").write_text(src)
        done = subprocess.run(
            [
                find_ruff_bin(),
                "check",
                "--isolated",
                "--no-cache",
                "--exit-zero",
                "--select",
                STYLE_RULES,
                "--output-format",
                "json",
                tmp,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    counts = [0] * len(sources)
    for diag in json.loads(done.stdout or "[]"):
        code = diag.get("code") or ""
        if code[:1] in ("E", "W"):
            counts[int(Path(diag["filename"]).stem[1:])] += 1
    return counts


def style_count(source: str) -> int:
    """ruff E/W violations of one source."""
    return style_counts([source])[0]


# ---------------------------------------------------------------------------------------------
# style injections: each yields whole new sources with one more ruff-flagged violation
# ---------------------------------------------------------------------------------------------

_COMPOUND = frozenset(
    {
        "if",
        "elif",
        "else",
        "for",
        "while",
        "try",
        "except",
        "finally",
        "with",
        "def",
        "class",
        "async",
        "match",
        "case",
        "@",
    }
)
_SIMPLE_STMT = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Expr,
    ast.Return,
    ast.Pass,
    ast.Break,
    ast.Continue,
    ast.Raise,
    ast.Delete,
)


@dataclass(frozen=True)
class _Logical:
    start: int
    end: int
    first: str
    comment: bool
    indent: str


Injector = Callable[[str, list[str], list[_Logical], int], Iterator[str]]
"""A style injection: (source, its lines, its logical lines, first solution line) -> new sources."""


def logical_lines(source: str) -> list[_Logical]:
    """The logical lines of ``source`` (statements, continuation lines joined), from tokens."""
    out: list[_Logical] = []
    start = first = None
    comment = False
    lines = source.splitlines()
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment = True
        if start is None and tok.type not in skip and tok.type != tokenize.NEWLINE:
            start, first = tok.start[0], tok.string
        if tok.type == tokenize.NEWLINE and start is not None:
            line = lines[start - 1]
            indent = line[: len(line) - len(line.lstrip())]
            out.append(_Logical(start, tok.start[0], first or "", comment, indent))
            start, first, comment = None, None, False
        elif tok.type == tokenize.NEWLINE:
            comment = False
    return out


def _replace_line(lines: list[str], index: int, new: list[str]) -> str:
    return "".join(lines[:index] + new + lines[index + 1 :])


def _inject_semicolon(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical:
        if lg.start == lg.end >= first_line and lg.first not in _COMPOUND and not lg.comment:
            text = lines[lg.start - 1].rstrip()
            if not text.endswith(":"):
                yield _replace_line(lines, lg.start - 1, [text + ";\n"])


def _inject_trailing_whitespace(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical:
        if lg.start == lg.end >= first_line and not lg.comment:
            yield _replace_line(lines, lg.start - 1, [lines[lg.start - 1].rstrip() + "  \n"])


def _inject_blank_whitespace(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for lg in logical[1:]:
        if lg.start > first_line:
            indent = lg.indent or " "
            i = lg.start - 1
            yield "".join(lines[:i] + [indent + "\n"] + lines[i:])


def _inject_join(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for a, b in itertools.pairwise(logical):
        simple = a.first not in _COMPOUND and b.first not in _COMPOUND
        single = a.start == a.end and b.start == b.end == a.end + 1
        plain = not (a.comment or b.comment) and a.indent == b.indent
        if simple and single and plain and a.start >= first_line:
            joined = lines[a.start - 1].rstrip() + "; " + lines[b.start - 1].strip() + "\n"
            yield "".join(lines[: a.start - 1] + [joined] + lines[b.start :])


def _nodes(src: str, first_line: int) -> list[tuple[ast.AST, ast.AST | None]]:
    tree = ast.parse(src)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return [
        (n, parents.get(id(n)))
        for n in ast.walk(tree)
        if getattr(n, "lineno", 0) >= first_line and n.lineno == getattr(n, "end_lineno", -1)
    ]


def _segment(lines: list[str], node: ast.AST) -> tuple[bytes, int, int]:
    raw = lines[node.lineno - 1].encode()
    return raw, node.col_offset, node.end_col_offset


def _splice(lines: list[str], node: ast.AST, new: str) -> str:
    raw, a, b = _segment(lines, node)
    return _replace_line(lines, node.lineno - 1, [(raw[:a] + new.encode() + raw[b:]).decode()])


def _inject_one_line_block(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, (ast.If, ast.For, ast.While)) or node.orelse:
            continue
        if node.lineno < first_line or len(node.body) != 1:
            continue
        body = node.body[0]
        header = lines[node.lineno - 1].rstrip()
        if not isinstance(body, _SIMPLE_STMT) or "#" in header or not header.endswith(":"):
            continue
        if body.lineno == body.end_lineno == node.lineno + 1 and "#" not in lines[body.lineno - 1]:
            merged = header + " " + lines[body.lineno - 1].strip() + "\n"
            yield "".join(lines[: node.lineno - 1] + [merged] + lines[body.lineno :])


def _inject_none_equality(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node, _ in _nodes(src, first_line):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            continue
        op, right = node.ops[0], node.comparators[0]
        is_none = isinstance(right, ast.Constant) and right.value is None
        if not (is_none and isinstance(op, (ast.Is, ast.IsNot))):
            continue
        raw, a, b = _segment(lines, node)
        text = raw[a:b].decode()
        old, new = (" is not ", " != ") if isinstance(op, ast.IsNot) else (" is ", " == ")
        if text.count(old) == 1:
            yield _splice(lines, node, text.replace(old, new))


def _inject_true_equality(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, (ast.If, ast.While)) or node.lineno < first_line:
            continue
        test = node.test
        if isinstance(test, ast.Compare) and test.lineno == test.end_lineno == node.lineno:
            raw, a, b = _segment(lines, test)
            yield _splice(lines, test, f"({raw[a:b].decode()}) == True")


def _inject_not_in(
    src: str, lines: list[str], logical: list[_Logical], first_line: int
) -> Iterator[str]:
    contexts = (ast.If, ast.While, ast.BoolOp, ast.Return, ast.Assign, ast.IfExp, ast.comprehension)
    for node, parent in _nodes(src, first_line):
        if not (isinstance(node, ast.Compare) and isinstance(parent, contexts)):
            continue
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn):
            raw, a, b = _segment(lines, node)
            text = raw[a:b].decode()
            if text.count(" not in ") == 1:
                yield _splice(lines, node, "not " + text.replace(" not in ", " in "))


def _inserted_statement(statement: str) -> Injector:
    def inject(
        src: str, lines: list[str], logical: list[_Logical], first_line: int
    ) -> Iterator[str]:
        body = [lg for lg in logical if lg.start >= first_line]
        if body and body[0].indent:
            i = body[0].start - 1
            yield "".join(lines[:i] + [body[0].indent + statement + "\n"] + lines[i:])

    return inject


INJECTIONS: dict[str, Injector] = {
    "semicolon": _inject_semicolon,
    "trailing_whitespace": _inject_trailing_whitespace,
    "blank_line_whitespace": _inject_blank_whitespace,
    "two_statements": _inject_join,
    "one_line_block": _inject_one_line_block,
    "none_equality": _inject_none_equality,
    "true_equality": _inject_true_equality,
    "not_in": _inject_not_in,
    "multiple_imports": _inserted_statement("import os, sys"),
    "lambda_assignment": _inserted_statement("noop = lambda value: value"),
}
"""Style injections: semicolon (E703), trailing whitespace (W291), whitespace-only line (W293),
two statements on a line (E702), one-line block (E701), ``== None`` (E711), ``(...) == True``
(E712), ``not x in y`` (E713), ``import os, sys`` (E401), lambda assignment (E731)."""


def style_options(
    src: str, first_line: int, used: Sequence[str], rng: random.Random
) -> list[tuple[str, str]]:
    """Candidate injections in a seeded order: unused kinds first, kinds interleaved."""
    lines = src.splitlines(keepends=True)
    logical = logical_lines(src)
    per_kind: list[tuple[str, list[str]]] = []
    kinds = list(INJECTIONS)
    rng.shuffle(kinds)
    kinds.sort(key=lambda k: k in used)
    for kind in kinds:
        found = list(dict.fromkeys(INJECTIONS[kind](src, lines, logical, first_line)))
        rng.shuffle(found)
        if found:
            per_kind.append((kind, found))
    out: list[tuple[str, str]] = []
    depth = max((len(f) for _, f in per_kind), default=0)
    for i in range(depth):
        out.extend((kind, found[i]) for kind, found in per_kind if i < len(found))
    return out
