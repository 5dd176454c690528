# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Customized reward models (DSP, "Everyone Deserves A Reward"): one reward model conditioned on a domain or user.

`CustomRewardConfig`/`CustomRewardTrainer` (TRL's reward trainer plus conditioning, imitation, margins), the
conditioning spec, soft-token table and forward pass shared by training and scoring, the tokenization, and
`RewardScorer` to score with a trained model.
"""

from .adaptation import fit_new_condition
from .conditioning import ConditionEmbedding, ConditioningSpec
from .custom_reward_config import CustomRewardConfig
from .custom_reward_trainer import CustomRewardTrainer, DataCollatorForConditionedPreference
from .encoding import render_reward_text
from .scoring import RewardScorer, load_reward_model


__all__ = [
    "ConditionEmbedding",
    "ConditioningSpec",
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "RewardScorer",
    "load_reward_model",
    "fit_new_condition",
    "render_reward_text",
]
