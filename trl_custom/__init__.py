# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""trl-custom: customized (domain/user-conditioned) and personalized reward models and policies on top of TRL."""

from .conditioned_rm.conditioning import ConditionEmbedding, ConditioningSpec
from .conditioned_rm.custom_reward_config import CustomRewardConfig
from .conditioned_rm.custom_reward_trainer import CustomRewardTrainer, DataCollatorForConditionedPreference
from .conditioned_rm.encoding import render_reward_text
from .conditioned_rm.scoring import RewardScorer, load_reward_model
from .downstream.export import push_to_hub, save_personalized_model, save_reward_model, write_model_card
from .downstream.reward_functions import ConditionedRewardFunction
from .margin.agreement import augment_pairs
from .margin.augment_config import AugmentConfig
from .margin.judges import JudgmentCache, LMJudge, PairJudge, RewardModelJudge, judge_pairs, reward_model_judges
from .margin.similarity import MeanPooledEmbedder


__version__ = "0.1.0"

__all__ = [
    "AugmentConfig",
    "ConditionEmbedding",
    "ConditionedRewardFunction",
    "ConditioningSpec",
    "CustomRewardConfig",
    "CustomRewardTrainer",
    "DataCollatorForConditionedPreference",
    "JudgmentCache",
    "LMJudge",
    "MeanPooledEmbedder",
    "PairJudge",
    "RewardModelJudge",
    "RewardScorer",
    "augment_pairs",
    "judge_pairs",
    "load_reward_model",
    "push_to_hub",
    "render_reward_text",
    "save_reward_model",
    "write_model_card",
    "reward_model_judges",
]

from .personalized_dpo.inference import fit_new_user, generate_for_user, load_personalized_model
from .personalized_dpo.personalized_dpo_config import PersonalizedDPOConfig
from .personalized_dpo.personalized_dpo_trainer import DataCollatorForPersonalizedPreference, PersonalizedDPOTrainer
from .personalized_dpo.user_model import UserModel, UserModelConfig


__all__ += [
    "DataCollatorForPersonalizedPreference",
    "PersonalizedDPOConfig",
    "PersonalizedDPOTrainer",
    "UserModel",
    "UserModelConfig",
    "fit_new_user",
    "generate_for_user",
    "load_personalized_model",
    "save_personalized_model",
]
