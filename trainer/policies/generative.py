"""The generative policy: a Hugging Face causal LM that writes the rewrite.

An action is a text; its probability is the LM's sequence probability
``log p(a | s) = sum_t log p(a_t | prompt(s), a_<t)`` over the action's tokens followed by EOS,
with logits divided by ``temperature`` (the distribution :meth:`GenerativePolicy.generate` samples
from, so PPO's ratio compares like with like).  STOP is the empty rewrite: EOS alone.

- ``forward`` ranks: log-softmax of the sequence log-probs over ``[STOP, candidates]``;
- ``evaluate_actions`` and ``act`` report the sequence log-prob itself (not normalised over the
  candidates), the mean per-token entropy over the action's tokens and the value, so that PPO
  works on the generated tokens;
- the value is a linear head on the LM's last hidden state at the prompt's final token.

``transformers`` and ``peft`` are imported when a policy is built, never at package import.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import GenerativeConfig
from .base import Policy, PolicyOutput, select_action


def _offline_transformers() -> Any:
    """Import ``transformers`` with the Hub switched off (nothing downloads at run time)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers


def lora_targets(spec: str) -> str | list[str]:
    """peft ``target_modules`` from the config string: ``all-linear`` or comma-separated names."""
    return spec if spec == "all-linear" else [name.strip() for name in spec.split(",")]


def sequence_scores(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed token log-probs and mean token entropy of each row's targets.

    ``logits`` [R, T, V] predict ``targets`` [R, T]; ``mask`` [R, T] marks the real targets.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    token_logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    token_entropy = -(log_probs.exp() * log_probs).sum(-1)
    weights = mask.to(token_logp.dtype)
    total = (token_logp * weights).sum(-1)
    entropy = (token_entropy * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
    return total, entropy


class GenerativePolicy(Policy):
    """A causal LM as a policy over rewrites, with a linear value head (LoRA optional)."""

    kind = "generative"

    def __init__(
        self,
        cfg: GenerativeConfig | None = None,
        model: nn.Module | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg or GenerativeConfig()
        if self.cfg.temperature <= 0:
            raise ValueError("generative policy: temperature must be positive")
        transformers = _offline_transformers()
        if (model is None or tokenizer is None) and not self.cfg.model:
            raise ValueError(
                "generative policy: set [generative] model to a model name or local path"
            )
        if model is None:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.cfg.model, local_files_only=True
            )
        if tokenizer is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.cfg.model, local_files_only=True
            )
        self.tokenizer = tokenizer
        self.hf_config = model.config
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = model.config.eos_token_id
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            raise ValueError("generative policy: the tokenizer has no EOS token")
        self.eos_id = int(eos)
        pad = tokenizer.pad_token_id
        self.pad_id = self.eos_id if pad is None else int(pad)
        if self.cfg.lora:
            import peft

            model = peft.get_peft_model(
                model,
                peft.LoraConfig(
                    r=self.cfg.lora_rank,
                    lora_alpha=self.cfg.lora_alpha,
                    lora_dropout=0.0,
                    target_modules=lora_targets(self.cfg.lora_targets),
                    task_type="CAUSAL_LM",
                ),
            )
        self.model = model
        self.value_head = nn.Linear(model.get_output_embeddings().weight.shape[1], 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self._prompt_ids = lru_cache(maxsize=self.cfg.cache_size)(self._encode_prompt)
        self._action_ids = lru_cache(maxsize=self.cfg.cache_size)(self._encode_action)

    # -- configuration ---------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        dtype = next(self.model.parameters()).dtype
        return {
            "generative": dataclasses.asdict(self.cfg),
            "hf_config": self.hf_config.to_dict(),
            "dtype": str(dtype).removeprefix("torch."),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], assets: Path | None = None) -> GenerativePolicy:
        """Rebuild from :meth:`get_config` output and the tokenizer saved in ``assets``.

        The architecture comes from the saved HF config (weights are loaded afterwards), so a
        checkpoint never needs the original model name or path.
        """
        transformers = _offline_transformers()
        if assets is None:
            raise ValueError("a generative checkpoint needs its tokenizer folder")
        hf_config = transformers.AutoConfig.for_model(**config["hf_config"])
        model = transformers.AutoModelForCausalLM.from_config(
            hf_config, dtype=getattr(torch, config["dtype"])
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(assets), local_files_only=True)
        return cls(GenerativeConfig(**config["generative"]), model=model, tokenizer=tokenizer)

    def save_assets(self, directory: Path) -> None:
        """Write the tokenizer into ``directory`` so a checkpoint is self-contained."""
        self.tokenizer.save_pretrained(str(directory))

    # -- tokens ----------------------------------------------------------------------------

    def _encode_prompt(self, state: str) -> tuple[int, ...]:
        """Prompt token ids of a state; the end is kept when it is too long."""
        text = self.cfg.prompt_template.format(state=state)
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return tuple(ids[-self.cfg.max_prompt_tokens :]) or (self.eos_id,)

    def _encode_action(self, text: str) -> tuple[int, ...]:
        """Token ids of an action text followed by EOS (STOP, the empty text: EOS alone)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return (*ids[: self.cfg.max_action_tokens], self.eos_id)

    # -- scoring ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def score_pairs(
        self, prompts: Sequence[str], actions: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequence log-prob, mean token entropy and prompt value of each (prompt, action) row.

        Rows are left-padded (with explicit position ids) so every action ends at the last
        position and only those logits are computed; rows go through the LM ``micro_batch`` at
        a time.  Each output has shape [R].
        """
        totals, entropies, values = [], [], []
        step = self.cfg.micro_batch
        for start in range(0, len(prompts), step):
            rows = [
                (self._prompt_ids(p), self._action_ids(a))
                for p, a in zip(prompts[start : start + step], actions[start : start + step])
            ]
            total, entropy, value = self._score_rows(rows)
            totals.append(total)
            entropies.append(entropy)
            values.append(value)
        return torch.cat(totals), torch.cat(entropies), torch.cat(values)

    def _score_rows(
        self, rows: Sequence[tuple[tuple[int, ...], tuple[int, ...]]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One LM pass over left-padded ``prompt + action`` rows (see :meth:`score_pairs`)."""
        length = max(len(p) + len(a) for p, a in rows)
        span = max(len(a) for _, a in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        targets = torch.full((len(rows), span), self.pad_id, dtype=torch.long)
        target_mask = torch.zeros((len(rows), span), dtype=torch.bool)
        for r, (prompt, action) in enumerate(rows):
            seq = prompt + action
            ids[r, length - len(seq) :] = torch.tensor(seq)
            attention[r, length - len(seq) :] = 1
            targets[r, span - len(action) :] = torch.tensor(action)
            target_mask[r, span - len(action) :] = True
        positions = (attention.cumsum(-1) - 1).clamp_min(0)
        device = self.device
        # The LM head's input over the kept window is the final hidden state: the prompt's last
        # token sits at window index span - len(action).  Capturing it avoids keeping every
        # layer's hidden states (output_hidden_states) just for the value.
        captured: list[torch.Tensor] = []
        hook = self.model.get_output_embeddings().register_forward_hook(
            lambda _module, inputs, _output: captured.append(inputs[0])
        )
        try:
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                position_ids=positions.to(device),
                logits_to_keep=span + 1,
                use_cache=False,
            )
        finally:
            hook.remove()
        logits = out.logits[:, :-1] / self.cfg.temperature
        total, entropy = sequence_scores(logits, targets.to(device), target_mask.to(device))
        last_prompt = torch.tensor([span - len(a) for _, a in rows], device=device)
        hidden = captured[0][torch.arange(len(rows), device=device), last_prompt]
        value = self.value_head(hidden.float()).squeeze(-1)
        return total, entropy, value

    def forward(self, states: Sequence[str], candidates: Sequence[Sequence[str]]) -> PolicyOutput:
        if not states or len(states) != len(candidates):
            raise ValueError("need a non-empty batch with one candidate list per state")
        prompts = [s for s, cs in zip(states, candidates) for _ in range(1 + len(cs))]
        actions = [a for cs in candidates for a in ("", *cs)]
        total, _, value = self.score_pairs(prompts, actions)
        width = 1 + max(len(cs) for cs in candidates)
        scores = torch.full((len(states), width), -torch.inf, device=total.device)
        rows = [i for i, cs in enumerate(candidates) for _ in range(1 + len(cs))]
        cols = [j for cs in candidates for j in range(1 + len(cs))]
        scores[rows, cols] = total
        stop_rows = torch.tensor(cols, device=value.device) == 0
        return PolicyOutput(torch.log_softmax(scores, dim=-1), value[stop_rows])

    def evaluate_actions(
        self,
        states: Sequence[str],
        candidates: Sequence[Sequence[str]],
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequence log-prob of each taken action (0: STOP, i: candidate i-1), value, entropy."""
        chosen = [("", *cs)[int(a)] for cs, a in zip(candidates, actions.tolist(), strict=True)]
        total, entropy, value = self.score_pairs(list(states), chosen)
        return total, value, entropy

    @torch.no_grad()
    def act(
        self,
        state: str,
        candidates: Sequence[str],
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float, float]:
        """Pick by the ranking of :meth:`forward`; report the sequence log-prob of the pick
        (the quantity :meth:`evaluate_actions` returns, so PPO's ratio starts at one)."""
        action = select_action(self([state], [list(candidates)]).log_probs[0], greedy, generator)
        logp, value, _ = self.evaluate_actions([state], [list(candidates)], torch.tensor([action]))
        return action, float(logp[0]), float(value[0])

    # -- proposing -------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, state: str, n: int = 1) -> list[str]:
        """Sample ``n`` rewrites of ``state`` (pure temperature sampling: no top-k / top-p)."""
        prompt = torch.tensor([self._prompt_ids(state)], device=self.device).repeat(n, 1)
        out = self.model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=True,
            temperature=self.cfg.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=self.cfg.max_new_tokens,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
        )
        return self.tokenizer.batch_decode(out[:, prompt.shape[1] :], skip_special_tokens=True)
