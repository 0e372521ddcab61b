"""Policies: ranker, generative LM, checkpoints (everything real, nothing downloaded)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from trustfix.trainer.config import (
    GenerativeConfig,
    PPOConfig,
    RankerConfig,
    TrustfixConfig,
    TrustRegionConfig,
)
from trustfix.trainer.policies import (
    POLICY_KINDS,
    STOP,
    CheckpointError,
    GenerativePolicy,
    RankerPolicy,
    latest_version,
    load_checkpoint,
    make_policy,
    save_checkpoint,
)
from trustfix.trainer.policies.ranker import apply_rotary, rotary_tables, tokenize

STATES = [
    "def add(a, b):\n    return a - b\nF401 unused import\ntest_add failed line 2",
    "for i in range(len(xs) + 1):\n    total += xs[i]",
    "x = 1",
]
CANDIDATES = [
    ["--- a\n+++ b\n-    return a - b\n+    return a + b\nswap operator", "ruff format", "noop"],
    ["- range(len(xs) + 1)\n+ range(len(xs))\noff by one"],
    ["rename x", "add type hints", "inline", "remove line", "swap args"],
]


@pytest.fixture(autouse=True)
def single_thread():
    """The models here are tiny: one intra-op thread is faster and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_ranker(seed: int = 0, **overrides: int) -> RankerPolicy:
    torch.manual_seed(seed)
    fields = {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_tokens": 64, "state_tokens": 32}
    return RankerPolicy(RankerConfig(**{**fields, **overrides}))


@pytest.fixture(scope="module")
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained here on a few code snippets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(STATES + [c for cs in CANDIDATES for c in cs], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def tiny_lm(tokenizer, seed: int = 0):
    """A randomly initialised 2-layer Llama, hidden 32, tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def tiny_generative(tokenizer, seed: int = 0, **overrides) -> GenerativePolicy:
    cfg = GenerativeConfig(**{"max_new_tokens": 8, "micro_batch": 4, **overrides})
    return GenerativePolicy(cfg, model=tiny_lm(tokenizer, seed), tokenizer=tokenizer)


def check_distribution(policy, states, candidates) -> None:
    """Rows normalise over [STOP + candidates]; padding is -inf and gets no samples."""
    out = policy(states, candidates)
    width = 1 + max(len(c) for c in candidates)
    assert out.log_probs.shape == (len(states), width)
    assert out.values.shape == (len(states),)
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(len(states)), atol=1e-5)
    for row, cs in enumerate(candidates):
        assert torch.isfinite(out.log_probs[row, : 1 + len(cs)]).all()
        assert torch.isneginf(out.log_probs[row, 1 + len(cs) :]).all()
    draws = torch.multinomial(
        out.log_probs.exp().detach(),
        2000,
        replacement=True,
        generator=torch.Generator().manual_seed(0),
    )
    for row, cs in enumerate(candidates):
        assert int(draws[row].max()) <= len(cs)


def check_batch_equals_single(policy, states, candidates) -> None:
    with torch.no_grad():
        batch = policy(states, candidates)
        for row, (s, cs) in enumerate(zip(states, candidates)):
            single = policy([s], [cs])
            n = 1 + len(cs)
            assert torch.allclose(batch.log_probs[row, :n], single.log_probs[0], atol=1e-5)
            assert torch.allclose(batch.values[row], single.values[0], atol=1e-5)


# -- ranker -------------------------------------------------------------------------------


def test_tokenizer_is_stable_across_processes() -> None:
    text = "def f(x):\n    return x[0] + 1  # ok"
    ids = tokenize(text, 4096)
    assert len(ids) == 16 and all(4 <= i < 4096 for i in ids)
    code = (
        "from trustfix.trainer.policies.ranker import tokenize;"
        f"print(list(tokenize({text!r}, 4096)))"
    )
    seed = "12345"  # this process hashes str with another (random) seed
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    assert json.loads(out.stdout) == list(ids)


def test_ranker_state_keeps_its_start_and_pairs_fit() -> None:
    policy = tiny_ranker()
    words = [f"w{i}" for i in range(100)]
    state_ids = policy.state_ids(" ".join(words))
    assert len(state_ids) == 1 + 32
    assert state_ids[1] == tokenize("w0", policy.cfg.vocab_size)[0]
    assert state_ids[-1] == tokenize("w31", policy.cfg.vocab_size)[0]
    cand = policy.candidate_ids(" ".join(words), len(state_ids))
    assert len(state_ids) + len(cand) == policy.cfg.max_tokens
    assert cand[1] == tokenize("w0", policy.cfg.vocab_size)[0]


def test_ranker_distribution_and_padding() -> None:
    policy = tiny_ranker()
    check_distribution(policy, STATES, CANDIDATES)
    check_distribution(policy, ["only stop"], [[]])
    action, logp, _ = policy.act(
        STATES[1], CANDIDATES[1], generator=torch.Generator().manual_seed(1)
    )
    assert action in (STOP, 1) and logp <= 0.0


def test_ranker_batch_equals_one_by_one() -> None:
    check_batch_equals_single(tiny_ranker(), STATES, CANDIDATES)


def test_rotary_is_a_rotation_with_relative_phase() -> None:
    cos, sin = rotary_tables(40, 8, 10_000.0, torch.device("cpu"))
    q, k = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    qs = apply_rotary(q.expand(40, 8), cos, sin)
    ks = apply_rotary(k.expand(40, 8), cos, sin)
    assert torch.allclose(qs.norm(dim=-1), q.norm().expand(40), atol=1e-5)
    assert not torch.allclose(qs[0], qs[5])
    # <R_m q, R_n k> depends on n - m only.
    assert torch.allclose(qs[3] @ ks[10], qs[20] @ ks[27], atol=1e-4)
    assert not torch.allclose(qs[3] @ ks[10], qs[3] @ ks[11], atol=1e-4)


def test_ranker_order_matters() -> None:
    policy = tiny_ranker(seed=3)
    with torch.no_grad():
        out = policy(["alpha beta gamma"], [["one two three", "two one three"]])
        swapped = policy(["beta alpha gamma"], [["one two three", "two one three"]])
    assert abs(float(out.log_probs[0, 1] - out.log_probs[0, 2])) > 1e-6
    assert abs(float(out.values[0] - swapped.values[0])) > 1e-7


def test_ranker_evaluate_actions_matches_forward() -> None:
    policy = tiny_ranker()
    actions = torch.tensor([3, 1, 0])
    logp, value, entropy = policy.evaluate_actions(STATES, CANDIDATES, actions)
    out = policy(STATES, CANDIDATES)
    assert torch.allclose(logp, out.log_probs.gather(1, actions[:, None]).squeeze(1))
    assert torch.allclose(value, out.values)
    for row, cs in enumerate(CANDIDATES):
        p = out.log_probs[row, : 1 + len(cs)].exp()
        assert torch.allclose(entropy[row], -(p * p.log()).sum(), atol=1e-6)
        assert 0 < float(entropy[row].detach()) <= torch.log(torch.tensor(1.0 + len(cs))) + 1e-6


def keyword_batch(rng: random.Random, n: int) -> tuple[list[str], list[list[str]], list[int]]:
    """States name a keyword among filler; exactly one of 4 candidates contains it."""
    keys = [f"key{i}" for i in range(12)]
    filler = [f"w{i}" for i in range(30)]
    states, cands, targets = [], [], []
    for _ in range(n):
        key, *others = rng.sample(keys, 4)
        answer = rng.randrange(4)
        options = [key if j == answer else others[j - (j > answer)] for j in range(4)]
        states.append(" ".join([*rng.sample(filler, 3), "use", key, *rng.sample(filler, 3)]))
        cands.append([f"{rng.choice(filler)} {o} {rng.choice(filler)}" for o in options])
        targets.append(1 + answer)
    return states, cands, targets


def test_ranker_learns_keyword_task() -> None:
    """Supervised: reaches > 90% held-out accuracy within 400 Adam steps of 16 examples."""
    policy = tiny_ranker(seed=0, max_tokens=32, state_tokens=16)
    opt = torch.optim.Adam(policy.parameters(), lr=5e-3)
    rng = random.Random(0)
    held_states, held_cands, held_targets = keyword_batch(random.Random(99), 200)
    accuracy = 0.0
    for step in range(1, 401):
        states, cands, targets = keyword_batch(rng, 16)
        loss = -policy(states, cands).log_probs[range(16), targets].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                picks = policy(held_states, held_cands).log_probs.argmax(-1)
            accuracy = float((picks == torch.tensor(held_targets)).float().mean())
            if accuracy > 0.9:
                break
    assert accuracy > 0.9, accuracy


def test_make_policy() -> None:
    cfg = TrustfixConfig()
    assert isinstance(make_policy("ranker", cfg), RankerPolicy)
    with pytest.raises(ValueError, match="model"):
        make_policy("generative", cfg)
    with pytest.raises(ValueError, match="unknown policy kind"):
        make_policy("nope", cfg)
    assert set(POLICY_KINDS) == {"ranker", "generative"}


# -- checkpoints --------------------------------------------------------------------------


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


def test_ranker_checkpoint_round_trip(tmp_path) -> None:
    policy = tiny_ranker(seed=5).eval()
    assert latest_version(tmp_path) is None
    save_checkpoint(policy, tmp_path, 1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)
    info = save_checkpoint(policy, tmp_path, 2)
    assert info.path.name == "policy-v2.safetensors" and info.size == info.path.stat().st_size
    assert latest_version(tmp_path) == 2
    record = json.loads((tmp_path / "policy-v2.json").read_text())
    assert record["kind"] == "ranker" and record["sha256"] == info.sha256
    loaded, loaded_info = load_checkpoint(tmp_path)
    assert loaded_info == info and isinstance(loaded, RankerPolicy)
    assert_same_weights(policy, loaded)
    with torch.no_grad():
        assert torch.equal(
            policy(STATES, CANDIDATES).log_probs, loaded(STATES, CANDIDATES).log_probs
        )
    older, _ = load_checkpoint(tmp_path / "policy-v1.json")
    assert not torch.equal(older.score_head.weight, policy.score_head.weight)
    again, _ = load_checkpoint(tmp_path, version=2, expected_sha256=info.sha256)
    assert_same_weights(policy, again)


def test_tampered_checkpoint_is_refused(tmp_path) -> None:
    info = save_checkpoint(tiny_ranker(), tmp_path, 7)
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(tmp_path, expected_sha256="0" * 64)
    data = bytearray(info.path.read_bytes())
    data[-3] ^= 0x01
    info.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(tmp_path, 7)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(empty)


def test_generative_checkpoint_round_trip(tmp_path, tiny_tokenizer) -> None:
    policy = tiny_generative(tiny_tokenizer, seed=2).eval()
    with torch.no_grad():
        policy.value_head.weight.normal_()
    save_checkpoint(policy, tmp_path, 3)
    loaded, info = load_checkpoint(tmp_path / "policy-v3.safetensors")
    assert isinstance(loaded, GenerativePolicy) and info.version == 3
    assert_same_weights(policy, loaded)
    lm = loaded.model
    assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()
    assert loaded.tokenizer(STATES[0])["input_ids"] == tiny_tokenizer(STATES[0])["input_ids"]
    with torch.no_grad():
        a, b = policy(STATES, CANDIDATES), loaded(STATES, CANDIDATES)
    assert torch.equal(a.log_probs, b.log_probs) and torch.equal(a.values, b.values)
    tokenizer_file = tmp_path / "policy-v3.assets" / "tokenizer.json"
    tokenizer_file.write_text(tokenizer_file.read_text().replace("<unk>", "<UNK>"))
    with pytest.raises(CheckpointError, match="assets"):
        load_checkpoint(tmp_path)


def test_generative_loads_from_local_path(tmp_path, tiny_tokenizer) -> None:
    tiny_lm(tiny_tokenizer, seed=4).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    cfg = TrustfixConfig(generative=GenerativeConfig(model=str(tmp_path), max_new_tokens=4))
    policy = make_policy("generative", cfg)
    reference = tiny_generative(tiny_tokenizer, seed=4, max_new_tokens=4)
    with torch.no_grad():
        assert torch.allclose(
            policy(STATES, CANDIDATES).log_probs, reference(STATES, CANDIDATES).log_probs, atol=1e-6
        )


# -- generative ---------------------------------------------------------------------------


def test_generative_shapes_distribution_and_batching(tiny_tokenizer) -> None:
    policy = tiny_generative(tiny_tokenizer)
    with torch.no_grad():
        policy.value_head.weight.normal_()
    check_distribution(policy, STATES, CANDIDATES)
    check_batch_equals_single(policy, STATES, CANDIDATES)
    # The value reads the LM's final hidden state at the prompt's last token.
    prompt = tiny_tokenizer(STATES[2] + "\n### Rewrite:\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = policy.model.model(input_ids=prompt).last_hidden_state[0, -1]
        assert torch.allclose(
            policy(STATES, CANDIDATES).values[2], policy.value_head(hidden)[0], atol=1e-5
        )
    actions = torch.tensor([2, 0, 5])
    logp, value, entropy = policy.evaluate_actions(STATES, CANDIDATES, actions)
    assert logp.shape == value.shape == entropy.shape == (3,)
    assert (logp < 0).all() and (entropy > 0).all()
    # forward ranks: log-softmax of the same sequence log-probs over [STOP, candidates].
    out = policy(STATES, CANDIDATES)
    for row, cs in enumerate(CANDIDATES):
        every = policy.evaluate_actions(
            [STATES[row]] * (1 + len(cs)), [cs] * (1 + len(cs)), torch.arange(1 + len(cs))
        )[0]
        assert torch.allclose(out.log_probs[row, : 1 + len(cs)], every.log_softmax(0), atol=1e-5)
        assert torch.allclose(every[actions[row]], logp[row], atol=1e-5)
    assert torch.allclose(out.values, value, atol=1e-6)
    action, act_logp, _ = policy.act(STATES[0], CANDIDATES[0], greedy=True)
    assert action == int(out.log_probs[0].argmax())
    assert act_logp == pytest.approx(
        float(
            policy.evaluate_actions(STATES[:1], CANDIDATES[:1], torch.tensor([action]))[0].detach()
        ),
        abs=1e-5,
    )


def test_generative_generate_returns_text(tiny_tokenizer) -> None:
    policy = tiny_generative(tiny_tokenizer)
    torch.manual_seed(0)
    texts = policy.generate(STATES[0], n=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert len(set(texts)) > 1  # sampled, not greedy


def ppo_step(policy: GenerativePolicy, clip: float, value_coef: float = 0.0):
    """One PPOLearner update on 4 of the policy's own samples, all with advantage +1.

    Returns (probability ratios new/old, parameters before, parameters after).
    """
    from trustfix.trainer.ppo import PPOLearner

    torch.manual_seed(0)
    state = STATES[1]
    samples = policy.generate(state, n=4)
    candidates = [samples] * 4
    actions = torch.arange(1, 5)
    with torch.no_grad():
        old_logp, _, _ = policy.evaluate_actions([state] * 4, candidates, actions)
    ppo = PPOConfig(
        lr=1e-5,
        epochs=80,
        minibatch_size=4,
        normalize_advantages=False,
        entropy_coef=0.0,
        value_coef=value_coef,
        max_grad_norm=10.0,
        device="cpu",
        adaptive_trust_region=False,
        gate=False,
        use_confidence=False,
    )
    learner = PPOLearner(policy, ppo, TrustRegionConfig(fixed_clip=clip))
    buffer = learner.transitions_from(
        [state] * 4,
        candidates,
        actions.tolist(),
        old_logp.tolist(),
        [0.0] * 4,
        [1.0] * 4,
        [True] * 4,
        [None] * 4,
    )
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    learner.update(buffer)
    with torch.no_grad():
        new_logp, _, _ = policy.evaluate_actions([state] * 4, candidates, actions)
    after = {n: p.detach().clone() for n, p in policy.named_parameters()}
    return (new_logp - old_logp).exp(), before, after


def test_generative_ppo_step_respects_clip(tiny_tokenizer) -> None:
    """Clipping stops a sample's push once its ratio passes 1 + eps: training ends when every
    sample is past it, so the least-moved sample stops near 1 + eps (shared weights and Adam's
    momentum carry the others a little further); without the clip the ratios keep growing."""
    eps, tolerance = 0.2, 0.2
    ratios, before, after = ppo_step(tiny_generative(tiny_tokenizer), clip=eps)
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("model."))
    assert (ratios > 1.0).all(), ratios  # every sample had a positive advantage
    assert 1 + eps - 0.05 <= float(ratios.min()) <= 1 + eps + tolerance, ratios
    unclipped, _, _ = ppo_step(tiny_generative(tiny_tokenizer), clip=100.0)
    assert float(unclipped.min()) > 1 + eps + 2 * tolerance, unclipped
    assert float(ratios.max()) < float(unclipped.min())


def test_generative_lora_trains_only_adapter_and_value_head(tmp_path, tiny_tokenizer) -> None:
    policy = tiny_generative(tiny_tokenizer, lora=True, lora_rank=4)
    _, before, after = ppo_step(policy, clip=0.2, value_coef=0.5)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "nothing trained"
    assert all("lora_" in n or n.startswith("value_head.") for n in changed), changed
    assert any("lora_" in n for n in changed) and any(n.startswith("value_head.") for n in changed)
    save_checkpoint(policy, tmp_path, 1)
    loaded, _ = load_checkpoint(tmp_path)
    assert loaded.cfg.lora
    assert_same_weights(policy, loaded)


def test_ranker_batches_long_and_short_states_together():
    """A long state's padding must not run past the rotary table (found by the daemon)."""
    from trustfix.trainer.config import RankerConfig
    from trustfix.trainer.policies import RankerPolicy

    policy = RankerPolicy(RankerConfig(max_tokens=32, state_tokens=24))
    long_state, short_state = " ".join(f"w{i}" for i in range(60)), "short"
    cands = [["x"], ["a b c d e f g h i j k l m n o p q r s t u v w x y z"]]
    out = policy([long_state, short_state], cands)
    alone = policy([long_state], cands[:1])
    assert torch.isfinite(out.log_probs[:, :2]).all()
    assert torch.allclose(out.log_probs[0, :2], alone.log_probs[0], atol=1e-5)


def test_ranker_reads_at_most_candidate_tokens_of_a_candidate() -> None:
    torch.manual_seed(0)
    policy = RankerPolicy(RankerConfig(d_model=32, n_layers=1, candidate_tokens=8)).eval()
    head = "swap < for <= on line 2 - x < 0"
    with torch.no_grad():
        same = policy(["state"], [[head + " tail one", head + " other tail"]]).log_probs
        differ = policy(["state"], [["swap < for <=", "use x instead of y"]]).log_probs
    assert len(policy.candidate_ids(head + " tail", 2)) == 1 + 8
    assert torch.allclose(same[0, 1], same[0, 2])
    assert not torch.allclose(differ[0, 1], differ[0, 2])
    with pytest.raises(ValueError, match="candidate_tokens"):
        RankerPolicy(RankerConfig(candidate_tokens=0))
