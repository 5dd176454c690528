# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Personalized online RL: TRL's GRPO and RLOO with the P-DPO user model (soft tokens per user) in generation and in every
log-prob pass, rewarded per user (e.g. by a conditioned reward model as `reward_funcs`).
"""

from .personalized_grpo_config import PersonalizedGRPOConfig
from .personalized_grpo_trainer import PersonalizedGRPOTrainer
from .personalized_rloo_config import PersonalizedRLOOConfig
from .personalized_rloo_trainer import PersonalizedRLOOTrainer


__all__ = ["PersonalizedGRPOConfig", "PersonalizedGRPOTrainer", "PersonalizedRLOOConfig", "PersonalizedRLOOTrainer"]
