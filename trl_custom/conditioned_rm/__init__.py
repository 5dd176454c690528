# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Customized reward models (DSP, "Everyone Deserves A Reward"): one reward model conditioned on a domain or user.

`CustomRewardConfig`/`CustomRewardTrainer` (TRL's reward trainer plus conditioning, imitation, truncation, pooling),
the forward pass and tokenization shared by training and scoring, `RewardScorer` to score with a trained model, and
`fit_new_condition` for a condition never seen in training.
"""

from .adaptation import fit_new_condition
from .collator import DataCollatorForConditionedPreference
from .custom_reward_config import CustomRewardConfig
from .custom_reward_trainer import CustomRewardTrainer
from .encoding import render_reward_text
from .scoring import RewardScorer, load_reward_model


__all__ = [
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "RewardScorer",
    "load_reward_model",
    "fit_new_condition",
    "render_reward_text",
]
