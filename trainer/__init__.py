"""trustfix's learning side: confidence, trust region, PPO, policies.

A state, an action and a feedback are texts and numbers here; nothing in this package knows
about code.  The names below are the stable API other parts (and outside scripts) drive; they
load on first use (PEP 562), so ``import trustfix.trainer.events`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "confidence": ("ConfidenceEstimator", "FeedbackItem", "beta_mean", "smoothed_confidence"),
    "config": (
        "ConfidenceConfig",
        "DistributedConfig",
        "EncoderConfig",
        "GenerativeConfig",
        "PPOConfig",
        "RankerConfig",
        "StreamConfig",
        "TrustfixConfig",
        "TrustRegionConfig",
        "load_config",
    ),
    "encoders": ("Encoder", "HashingEncoder", "get_encoder"),
    "policies": (
        "STOP",
        "GenerativePolicy",
        "Policy",
        "PolicyOutput",
        "RankerPolicy",
        "load_checkpoint",
        "make_policy",
        "save_checkpoint",
    ),
    "ppo": ("PPOLearner", "RolloutBuffer", "Transition", "generalized_advantages"),
    "trust_region": (
        "StepControl",
        "TrustRegionController",
        "gae_lambda",
        "human_signal",
        "shaped_reward",
        "shaping_coefficient",
        "trust_region_radius",
        "update_gate",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
