# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""trl-custom: customized (domain/user-conditioned) and personalized reward models and policies on top of TRL."""

from .conditioning import ConditionEmbedding, ConditioningSpec
from .custom_reward_config import CustomRewardConfig
from .custom_reward_trainer import CustomRewardTrainer, DataCollatorForConditionedPreference
from .scoring import RewardScorer, load_reward_model


__version__ = "0.1.0"

__all__ = [
    "ConditionEmbedding",
    "ConditioningSpec",
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "RewardScorer",
    "load_reward_model",
]
