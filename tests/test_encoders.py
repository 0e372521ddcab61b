"""Encoders: the embedded sentence model (offline, 384-dim unit vectors), caching, hashing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from trustfix.trainer.config import EMBEDDED
from trustfix.trainer.encoders import (
    HASHING,
    Encoder,
    HashingEncoder,
    cosine_similarity,
    get_encoder,
    make_encoder,
)


def test_import_is_quiet_and_lazy() -> None:
    code = (
        "import sys, trustfix.trainer.encoders\n"
        "assert 'transformers' not in sys.modules, 'transformers imported eagerly'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_cosine_similarity_hand_values() -> None:
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(
        1 / math.sqrt(2)
    )
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_embedded_model_loads_offline_and_gives_unit_384_vectors() -> None:
    enc = get_encoder(EMBEDDED)
    vecs = enc.encode(["def add(a, b): return a + b", "hello world"])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert enc.dim == 384
    assert vecs.shape == (2, 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_embedded_similar_texts_score_higher_than_unrelated() -> None:
    enc = get_encoder(EMBEDDED)
    a, b, c = enc.encode(
        [
            "sort the list of numbers in ascending order",
            "order the numbers of the list from smallest to largest",
            "the weather in Paris is rainy this afternoon",
        ]
    )
    assert cosine_similarity(a, b) > cosine_similarity(a, c) + 0.3
    assert cosine_similarity(b, c) < 0.3


def test_embedded_batch_padding_does_not_change_embeddings() -> None:
    """Mean pooling must ignore padding: a short text embeds the same alone or padded in a batch."""
    shared = get_encoder(EMBEDDED)
    short, long = "x = 1", "a considerably longer sentence " * 10
    batched = shared.encode([short, long])
    alone = Encoder(EMBEDDED, batch_size=1).encode([short, long])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_cache_hit_skips_the_model() -> None:
    enc = get_encoder(EMBEDDED)
    texts = ["cache me once", "and me too"]
    first = enc.encode(texts)
    calls = enc.model_calls
    second = enc.encode(list(reversed(texts)))
    assert enc.model_calls == calls
    np.testing.assert_array_equal(second, first[::-1])
    enc.encode(["a text never seen before by this cache"])
    assert enc.model_calls == calls + 1


def test_get_encoder_shares_one_instance_per_name() -> None:
    assert get_encoder(EMBEDDED) is get_encoder(EMBEDDED)
    assert get_encoder(HASHING) is get_encoder(HASHING)
    assert get_encoder(HASHING) is not get_encoder(EMBEDDED)
    assert isinstance(make_encoder(HASHING), HashingEncoder)
    assert make_encoder(HASHING) is not make_encoder(HASHING)


def test_hashing_encoder_is_deterministic_unit_and_similarity_aware() -> None:
    a, b = HashingEncoder(), HashingEncoder()
    texts = [
        "-    if i < len(xs) - 1:\n+    if i < len(xs):",
        "-    if i < len(xs) - 1:\n+    if i < len(xs):  # off by one",
        "please rename the variable total to running_sum",
        "",
    ]
    va, vb = a.encode(texts), b.encode(texts)
    np.testing.assert_array_equal(va, vb)
    assert va.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(va[:3], axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(va[3], 0.0)
    assert cosine_similarity(va[0], va[1]) > 0.8
    assert cosine_similarity(va[0], va[2]) < 0.3
    assert HashingEncoder(dim=64).encode(["x"]).shape == (1, 64)


def test_lru_cache_evicts_the_oldest() -> None:
    enc = HashingEncoder(cache_size=2)
    enc.encode(["one"])
    enc.encode(["two"])
    enc.encode(["one"])  # refresh "one": "two" is now the oldest
    calls = enc.model_calls
    enc.encode(["three"])  # evicts "two"
    enc.encode(["one"])
    assert enc.model_calls == calls + 1
    enc.encode(["two"])
    assert enc.model_calls == calls + 2


def test_concurrent_first_use_loads_once() -> None:
    class CountingEncoder(HashingEncoder):
        loads = 0

        def _load(self) -> None:
            CountingEncoder.loads += 1

    enc = CountingEncoder()
    results: list[np.ndarray] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        results.append(enc.encode(["same text", "other text"]))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CountingEncoder.loads == 1
    assert len(results) == 8
    for r in results:
        np.testing.assert_array_equal(r, results[0])
