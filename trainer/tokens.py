"""The policy's word-level token split, without torch: the language server measures the state's
token budget with it (:mod:`trustfix.server.state`) and the ranker hashes the same tokens."""

from __future__ import annotations

import re

TOKEN = re.compile(r"\w+|[^\w\s]|\n")
"""Words, single punctuation marks and newlines."""


def split_tokens(text: str) -> list[str]:
    """The tokens of ``text`` in order."""
    return TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens ``text`` has."""
    return sum(1 for _ in TOKEN.finditer(text))


def cut_tokens(text: str, limit: int) -> str:
    """``text`` up to the end of its ``limit``-th token (all of it when it has fewer)."""
    if limit <= 0:
        return ""
    for i, match in enumerate(TOKEN.finditer(text)):
        if i == limit - 1:
            return text[: match.end()]
    return text
