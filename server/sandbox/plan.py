"""Test planning: split a task's tests into setup steps and named test steps.

``tests`` is either one source string or a list of source strings.

* A string that defines ``check(candidate)`` (HumanEval style) is split into one test per
  top-level statement of ``check`` that contains an ``assert`` (a ``for`` loop of asserts is one
  test; ``assert True`` is dropped); the other statements of ``check`` (imports, assignments) run
  in order as setup.  ``candidate`` is bound to the program's ``entry_point`` (or to the argument
  of a top-level ``check(NAME)`` call, which is not executed itself).
* A string that defines top-level ``test_*`` functions (pytest style, no fixtures): each function
  is one test; the rest of the string is setup.
* Any other string: each top-level statement containing an ``assert`` is one test.
* A list of strings: each string is handled as above (a string without ``test_*`` functions or
  ``check`` counts as one test as a whole).

Test names carry the test's own line (``check:L12``).  Standard library only: the sandbox's
child script imports this module.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType

PROGRAM_FILE = "program.py"
"""File name the program is compiled under (tracebacks name it)."""
TESTS_FILE = "tests.py"
"""File name the tests are compiled under."""


@dataclass
class _Step:
    """One executable piece of the tests: setup (``name`` None) or a test."""

    code: CodeType
    name: str | None
    source: str
    call: str | None = None
    """For pytest-style tests: the function to call after ``code`` defined it."""


def _contains_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _trivial_assert(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Constant)
        and bool(node.test.value)
    )


def _compile(nodes: list[ast.stmt]) -> CodeType:
    return compile(ast.Module(body=nodes, type_ignores=[]), TESTS_FILE, "exec")


def _source(text: str, node: ast.stmt) -> str:
    return (ast.get_source_segment(text, node) or ast.unparse(node)).strip()


def _is_check_call(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "check"
    )


def _plan_string(text: str, index: int | None) -> tuple[list[_Step], str | None, str | None]:
    """Steps of one test string, plus (candidate parameter, candidate name) for HumanEval style."""
    tree = ast.parse(text, TESTS_FILE)
    check = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None
    )
    steps: list[_Step] = []
    if check is not None:
        calls = [n for n in tree.body if _is_check_call(n)]
        target = None
        if calls and calls[0].value.args and isinstance(calls[0].value.args[0], ast.Name):
            target = calls[0].value.args[0].id
        setup = [n for n in tree.body if n is not check and not _is_check_call(n)]
        if setup:
            steps.append(_Step(_compile(setup), None, "<module setup>"))
        param = check.args.args[0].arg if check.args.args else "candidate"
        for stmt in check.body:
            if isinstance(stmt, ast.Return):
                break
            if _trivial_assert(stmt):
                continue
            name = f"check:L{stmt.lineno}" if _contains_assert(stmt) else None
            steps.append(_Step(_compile([stmt]), name, _source(text, stmt)))
        return steps, param, target
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    if tests:
        steps.append(_Step(_compile(tree.body), None, "<module setup>"))
        steps.extend(_Step(_compile([]), t.name, t.name, call=t.name) for t in tests)
        return steps, None, None
    if index is not None:
        return [_Step(_compile(tree.body), f"test_{index}", text.strip())], None, None
    for stmt in tree.body:
        if _trivial_assert(stmt):
            continue
        name = f"test:L{stmt.lineno}" if _contains_assert(stmt) else None
        steps.append(_Step(_compile([stmt]), name, _source(text, stmt)))
    return steps, None, None


def plan_tests(tests: str | Sequence[str]) -> tuple[list[_Step], str | None, str | None]:
    """Split tests into setup and test steps (see the module docstring); names are unique."""
    if isinstance(tests, str):
        steps, param, target = _plan_string(tests, None)
    else:
        steps, param, target = [], None, None
        for i, text in enumerate(tests):
            more, p, t = _plan_string(text, i)
            steps.extend(more)
            param, target = param or p, target or t
    seen: collections.Counter[str] = collections.Counter()
    for step in steps:
        if step.name is not None:
            seen[step.name] += 1
            if seen[step.name] > 1:
                step.name = f"{step.name}#{seen[step.name]}"
    return steps, param, target
