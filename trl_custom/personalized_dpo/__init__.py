# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Personalized DPO (P-RLHF): a user model (soft tokens: a generic part + an individual part per user, see
`trl_custom.soft_tokens`) prepended to the policy's input, its trainer and config, inference and cold start for new
users, and the synthetic length-preference users.
"""

from .collator import DataCollatorForPersonalizedPreference
from .inference import fit_new_user, generate_for_user, load_personalized_model
from .personalized_dpo_config import PersonalizedDPOConfig
from .personalized_dpo_trainer import PersonalizedDPOTrainer


__all__ = [
    "DataCollatorForPersonalizedPreference",
    "PersonalizedDPOConfig",
    "PersonalizedDPOTrainer",
    "fit_new_user",
    "generate_for_user",
    "load_personalized_model",
]
