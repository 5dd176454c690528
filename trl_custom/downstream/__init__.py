# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Using trained models downstream: reward functions for TRL's online trainers, export with a model card."""

from .export import push_to_hub, save_personalized_model, save_reward_model, write_model_card
from .reward_functions import ConditionedRewardFunction


__all__ = [
    "ConditionedRewardFunction",
    "push_to_hub",
    "save_personalized_model",
    "save_reward_model",
    "write_model_card",
]
