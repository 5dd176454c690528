# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass

from trl import GRPOConfig

from ..soft_tokens.policy import RENAMED_USER_OPTIONS, PolicyConditioningArguments


@dataclass
class PersonalizedGRPOConfig(PolicyConditioningArguments, GRPOConfig):
    r"""
    Configuration class for [`PersonalizedGRPOTrainer`]: TRL's [`~trl.GRPOConfig`] plus the user model of
    [`PersonalizedDPOConfig`], under the same names ([`PolicyConditioningArguments`]: `condition_mode`,
    `condition_column` (default `"user_id"`), `conditions`, `strict_conditions`, `num_condition_tokens`,
    `condition_model`, `condition_dim`, `num_prototypes`, `condition_learning_rate`, `group_column`). Every field of
    `GRPOConfig` keeps its meaning.

    With users, keep TRL's default `scale_rewards="group"`: each prompt's completions belong to one user, so the group
    statistics are that user's, while `"batch"` would scale every user's rewards by a standard deviation that mixes
    users whose rewards differ in scale (a user rewarded in [0, 1] next to one rewarded in [0, 100] would barely move).
    `scale_rewards="batch"` with users is therefore refused.
    """

    RENAMED_OPTIONS = RENAMED_USER_OPTIONS
