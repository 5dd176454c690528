# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass

from trl import RLOOConfig

from ..soft_tokens.policy import RENAMED_USER_OPTIONS, PolicyConditioningArguments


@dataclass
class PersonalizedRLOOConfig(PolicyConditioningArguments, RLOOConfig):
    r"""
    Configuration class for [`PersonalizedRLOOTrainer`]: TRL's [`~trl.RLOOConfig`] plus the user model of
    [`PersonalizedDPOConfig`], under the same names ([`PolicyConditioningArguments`]). Every field of `RLOOConfig`
    keeps its meaning. RLOO's baseline is the other completions of the same prompt, i.e. of the same user; keep
    `normalize_advantages=False` (the default) with users: a batch-wide normalization mixes users' reward scales.
    """

    RENAMED_OPTIONS = RENAMED_USER_OPTIONS
