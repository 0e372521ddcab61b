"""The default policy: a small rotary transformer that scores each (state, candidate) pair.

Each pair is read as one sequence ``[CLS] state [SEP] candidate`` with rotary position embeddings
(RoPE: queries and keys rotated by their position, so attention sees relative order).  State
tokens attend only within ``[CLS] state``; ``[SEP]`` and the candidate tokens attend to the whole
sequence.  The state part of every pair is therefore identical and is computed once per state
and shared by all its candidates (like a prefix key/value cache): the cost per candidate is its
own tokens only.  Read-outs:

- the final ``[CLS]`` vector is the state encoding: the STOP score (STOP is the empty rewrite)
  and the value are linear heads on it;
- the final ``[SEP]`` vector is the pair encoding: the candidate's score is a linear head on it.

pi = softmax over ``[STOP, candidates]``, ``-inf`` on padding.

Tokens come from a deterministic regex split (words, single punctuation marks, newlines:
:mod:`trustfix.trainer.tokens`) hashed into ``vocab_size`` buckets with CRC-32 (stable across
processes, unlike Python's salted ``hash``).  The state keeps its *beginning* within
``state_tokens`` (the server writes it within that budget, source first); the candidate keeps
its beginning, at most ``candidate_tokens`` within the rest of ``max_tokens``.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RankerConfig
from ..tokens import split_tokens
from .base import Policy, PolicyOutput

PAD, CLS, SEP = 0, 1, 2
N_SPECIAL = 4
"""Ids below this are reserved (PAD, CLS, SEP and one spare); hashed tokens start here."""


@lru_cache(maxsize=65_536)
def tokenize(text: str, vocab_size: int) -> tuple[int, ...]:
    """Word / punctuation / newline tokens of ``text`` as stable hashed ids in [4, vocab_size)."""
    buckets = vocab_size - N_SPECIAL
    return tuple(
        N_SPECIAL + zlib.crc32(tok.encode("utf-8")) % buckets for tok in split_tokens(text)
    )


def rotary_tables(
    length: int, dim: int, base: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the RoPE angles ``pos * base^(-2i/dim)``, each [length, dim/2]."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., L, D] pairwise: coordinates i and i + D/2 by the angle of (cos, sin)[L, D/2].

    A rotation: norms are preserved and ``<R_m q, R_n k>`` depends on ``n - m`` only (RoPE).
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RotaryBlock(nn.Module):
    """Pre-norm transformer layer whose self-attention rotates queries and keys (RoPE).

    State rows attend within the state; candidate rows attend to their state's keys and values
    followed by their own.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError("d_model must split into n_heads heads of even width")
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def _qkv(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """Rotated queries and keys, and values, each [N, heads, L, head width]."""
        n, length, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(n, length, 3, self.n_heads, d // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )
        return apply_rotary(q, *rope), apply_rotary(k, *rope), v

    def _attend(
        self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Residual attention then residual MLP."""
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.out(att.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))

    def forward(
        self,
        xs: torch.Tensor,
        xc: torch.Tensor,
        owner: torch.Tensor,
        rope_s: tuple[torch.Tensor, torch.Tensor],
        rope_c: tuple[torch.Tensor, torch.Tensor],
        mask_s: torch.Tensor,
        mask_c: torch.Tensor,
        readout_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``xs`` [S, Ls, D] and candidates ``xc`` [N, Lc, D] (``owner`` [N]: their state).

        ``rope_s`` (cos, sin) [Ls, D/2h], ``rope_c`` [N, 1, Lc, D/2h]; masks
        [S|N, 1, 1, Ls|Ls+Lc] are True where a key may be attended.  With ``readout_only``
        (the last layer) only each row's first position ([CLS] / [SEP]) is computed: the
        others would never be read.
        """
        qs, ks, vs = self._qkv(xs, rope_s)
        qc, kc, vc = self._qkv(xc, rope_c)
        keys = torch.cat((ks[owner], kc), dim=2)
        values = torch.cat((vs[owner], vc), dim=2)
        if readout_only:
            xs, qs, xc, qc = xs[:, :1], qs[:, :, :1], xc[:, :1], qc[:, :, :1]
        return self._attend(xs, qs, ks, vs, mask_s), self._attend(xc, qc, keys, values, mask_c)


class RankerPolicy(Policy):
    """Rotary transformer over ``[CLS] state [SEP] candidate``; STOP and value from ``[CLS]``."""

    kind = "ranker"

    def __init__(self, cfg: RankerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or RankerConfig()
        c = self.cfg
        if not 0 <= c.state_tokens <= c.max_tokens - 3:
            raise ValueError("state_tokens must leave room for [CLS], [SEP] and a candidate")
        if c.candidate_tokens < 1:
            raise ValueError("candidate_tokens must be at least 1")
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=PAD)
        self.blocks = nn.ModuleList(
            RotaryBlock(c.d_model, c.n_heads, c.dropout) for _ in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model)
        self.score_head = nn.Linear(c.d_model, 1)
        self.stop_head = nn.Linear(c.d_model, 1)
        self.value_head = nn.Linear(c.d_model, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Small normal initialisation (std 0.02), zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict[str, Any], assets: Path | None = None) -> RankerPolicy:
        """Rebuild from :meth:`get_config` output (the ranker has no assets besides weights)."""
        if assets is not None:
            raise ValueError("the ranker policy has no assets")
        return cls(RankerConfig(**config))

    def state_ids(self, state: str) -> list[int]:
        """``[CLS]`` and the first ``state_tokens`` token ids of ``state``."""
        kept = tokenize(state, self.cfg.vocab_size)[: self.cfg.state_tokens]
        return [CLS, *kept] if self.cfg.state_tokens else [CLS]

    def candidate_ids(self, candidate: str, n_state: int) -> list[int]:
        """``[SEP]`` and the candidate's first token ids: at most ``candidate_tokens``, and so
        that the pair fits ``max_tokens``."""
        room = min(self.cfg.candidate_tokens, self.cfg.max_tokens - n_state - 1)
        return [SEP, *tokenize(candidate, self.cfg.vocab_size)[:room]]

    def encode(
        self, states: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final ``[CLS]`` vectors [S, D] of the states and ``[SEP]`` vectors [N, D] of the pairs
        (in order: state 0's candidates, then state 1's, ...), in one padded pass."""
        device = self.embed.weight.device
        state_seqs = [self.state_ids(s) for s in states]
        n_state = [len(seq) for seq in state_seqs]
        cand_seqs = [
            self.candidate_ids(cand, n_state[i]) for i, cs in enumerate(candidates) for cand in cs
        ]
        owner_list = [i for i, cs in enumerate(candidates) for _ in cs]
        ls = max(n_state)
        lc = max((len(seq) for seq in cand_seqs), default=1)
        ids_s = torch.tensor([seq + [PAD] * (ls - len(seq)) for seq in state_seqs], device=device)
        ids_c = torch.tensor(
            [seq + [PAD] * (lc - len(seq)) for seq in cand_seqs], device=device, dtype=torch.long
        ).view(len(cand_seqs), lc)
        owner = torch.tensor(owner_list, device=device, dtype=torch.long)
        head_dim = self.cfg.d_model // self.cfg.n_heads
        cos, sin = rotary_tables(self.cfg.max_tokens, head_dim, self.cfg.rope_base, device)
        # a pair never exceeds max_tokens, but padding past a short candidate of a long state
        # can: those positions are masked, so clamping them changes nothing
        positions = (
            torch.tensor(n_state, device=device)[owner][:, None] + torch.arange(lc, device=device)
        ).clamp_max(self.cfg.max_tokens - 1)
        rope_s = (cos[:ls], sin[:ls])
        rope_c = (cos[positions][:, None], sin[positions][:, None])
        mask_s = (ids_s != PAD)[:, None, None, :]
        mask_c = torch.cat((mask_s[owner], (ids_c != PAD)[:, None, None, :]), dim=-1)
        xs, xc = self.embed(ids_s), self.embed(ids_c)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            xs, xc = block(xs, xc, owner, rope_s, rope_c, mask_s, mask_c, readout_only=i == last)
        return self.norm(xs[:, 0]), self.norm(xc[:, 0])

    def forward(self, states: Sequence[str], candidates: Sequence[Sequence[str]]) -> PolicyOutput:
        if not states or len(states) != len(candidates):
            raise ValueError("need a non-empty batch with one candidate list per state")
        state_h, pair_h = self.encode(states, candidates)
        width = 1 + max(len(c) for c in candidates)
        logits = torch.full(
            (len(states), width), -math.inf, dtype=state_h.dtype, device=state_h.device
        )
        logits[:, 0] = self.stop_head(state_h).squeeze(-1)
        rows = [i for i, cs in enumerate(candidates) for _ in cs]
        cols = [j for cs in candidates for j in range(1, 1 + len(cs))]
        logits[rows, cols] = self.score_head(pair_h).squeeze(-1)
        return PolicyOutput(
            log_probs=torch.log_softmax(logits, dim=-1),
            values=self.value_head(state_h).squeeze(-1),
        )
