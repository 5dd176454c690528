# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""trl-custom: customized (domain/user-conditioned) and personalized reward models and policies on top of TRL."""

from .conditioned_rm import (
    CustomRewardConfig,
    CustomRewardTrainer,
    DataCollatorForConditionedPreference,
    RewardScorer,
    fit_new_condition,
    load_reward_model,
    render_reward_text,
)
from .downstream import (
    ConditionedRewardFunction,
    push_to_hub,
    save_personalized_model,
    save_reward_model,
    write_model_card,
)
from .margin import (
    AugmentConfig,
    JudgmentCache,
    LMJudge,
    MeanPooledEmbedder,
    PairJudge,
    RewardModelJudge,
    augment_pairs,
    judge_pairs,
    reward_model_judges,
)
from .personalized_dpo import (
    DataCollatorForPersonalizedPreference,
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    fit_new_user,
    generate_for_user,
    load_personalized_model,
)
from .record import ModelRecord
from .soft_tokens import ConditioningArguments, ConditioningSpec, SoftTokenConfig, SoftTokens


__version__ = "0.1.0"

__all__ = [
    # conditioning by soft tokens, shared by reward models and policies; the record of how a model reads inputs
    "ConditioningArguments",
    "ConditioningSpec",
    "ModelRecord",
    "SoftTokenConfig",
    "SoftTokens",
    # customized (conditioned) reward models
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "RewardScorer",
    "fit_new_condition",
    "load_reward_model",
    "render_reward_text",
    # margin-regularized reward models (synthetic judges)
    "AugmentConfig",
    "JudgmentCache",
    "LMJudge",
    "MeanPooledEmbedder",
    "PairJudge",
    "RewardModelJudge",
    "augment_pairs",
    "judge_pairs",
    "reward_model_judges",
    # personalized DPO
    "DataCollatorForPersonalizedPreference",
    "PersonalizedDPOConfig",
    "PersonalizedDPOTrainer",
    "fit_new_user",
    "generate_for_user",
    "load_personalized_model",
    # downstream use
    "ConditionedRewardFunction",
    "push_to_hub",
    "save_personalized_model",
    "save_reward_model",
    "write_model_card",
]
