# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Conditioning by soft tokens, for reward models and policies alike: the vocabulary of conditions with its generic
entry ([`ConditioningSpec`]), the soft-token module in its three variants ([`SoftTokens`]: table, low-rank,
prototype), the one injection into a model's input ([`soft_token_forward`], [`embed_with_soft_tokens`]) or at a
reward model's head ([`reward_head_forward`], [`head_features`]), the options both trainers share
([`ConditioningArguments`]) and the one cold-start fitter ([`fit_new_row`]). Nothing else in trl-custom touches soft
tokens.
"""

from .arguments import ConditioningArguments
from .fitting import fit_new_row
from .head import head_features, reward_head_forward
from .injection import embed_with_soft_tokens, plan_insertion, soft_token_forward
from .module import SoftTokens, attach_soft_tokens, get_soft_tokens, new_soft_tokens
from .spec import GENERIC, ConditioningSpec, SoftTokenConfig, is_missing


__all__ = [
    "GENERIC",
    "ConditioningArguments",
    "ConditioningSpec",
    "SoftTokenConfig",
    "SoftTokens",
    "attach_soft_tokens",
    "embed_with_soft_tokens",
    "fit_new_row",
    "get_soft_tokens",
    "head_features",
    "is_missing",
    "new_soft_tokens",
    "plan_insertion",
    "reward_head_forward",
    "soft_token_forward",
]
