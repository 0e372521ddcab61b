"""trustfix's learning side: confidence, trust region, PPO, policies.

A state, an action and a feedback are texts and numbers here; nothing in this package knows
about code.  The names below are the stable API other parts (and outside scripts) drive.
"""

from .confidence import ConfidenceEstimator, FeedbackItem, beta_mean, smoothed_confidence
from .config import (
    ConfidenceConfig,
    EncoderConfig,
    GenerativeConfig,
    PPOConfig,
    RankerConfig,
    TrustfixConfig,
    TrustRegionConfig,
    load_config,
)
from .encoders import Encoder, HashingEncoder, get_encoder
from .policies import (
    STOP,
    GenerativePolicy,
    Policy,
    PolicyOutput,
    RankerPolicy,
    load_checkpoint,
    make_policy,
    save_checkpoint,
)
from .ppo import PPOLearner, RolloutBuffer, Transition, generalized_advantages
from .trust_region import (
    StepControl,
    TrustRegionController,
    gae_lambda,
    human_signal,
    shaped_reward,
    shaping_coefficient,
    trust_region_radius,
    update_gate,
)

__all__ = [
    "STOP", "ConfidenceConfig", "ConfidenceEstimator", "EncoderConfig", "Encoder",
    "FeedbackItem", "GenerativeConfig", "GenerativePolicy", "HashingEncoder", "PPOConfig",
    "PPOLearner", "Policy", "PolicyOutput", "RankerConfig", "RankerPolicy", "RolloutBuffer",
    "StepControl", "Transition", "TrustRegionConfig", "TrustRegionController", "TrustfixConfig",
    "beta_mean", "gae_lambda", "generalized_advantages", "get_encoder", "human_signal",
    "load_checkpoint", "load_config", "make_policy", "save_checkpoint", "shaped_reward",
    "shaping_coefficient", "smoothed_confidence", "trust_region_radius", "update_gate",
]
