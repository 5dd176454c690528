# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""trl-custom: customized (domain/user-conditioned) and personalized reward models and policies on top of TRL.

The public names load lazily, as TRL's do: `import trl_custom` (and so the `trl-custom` command's `--help`) imports
neither torch nor TRL; `from trl_custom import CustomRewardTrainer` imports the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


__version__ = "0.1.0"

# module: its public names (each folder's `__init__.py` lists the same in its `__all__`)
_import_structure = {
    # conditioning by soft tokens, shared by reward models and policies; the record of how a model reads its inputs
    "soft_tokens": ["ConditioningArguments", "ConditioningSpec", "SoftTokenConfig", "SoftTokens"],
    "record": ["ModelRecord"],
    # customized (conditioned) reward models
    "conditioned_rm": [
        "CustomRewardConfig",
        "CustomRewardTrainer",
        "DataCollatorForConditionedPreference",
        "RewardScorer",
        "fit_new_condition",
        "load_reward_model",
        "render_reward_text",
    ],
    # margin-regularized reward models (synthetic judges)
    "margin": [
        "AugmentConfig",
        "JudgmentCache",
        "LMJudge",
        "MeanPooledEmbedder",
        "PairJudge",
        "RewardModelJudge",
        "augment_pairs",
        "judge_pairs",
        "reward_model_judges",
    ],
    # personalized DPO
    "personalized_dpo": [
        "DataCollatorForPersonalizedPreference",
        "PersonalizedDPOConfig",
        "PersonalizedDPOTrainer",
        "fit_new_user",
        "generate_for_user",
        "load_personalized_model",
    ],
    # personalized online RL
    "personalized_rl": [
        "PersonalizedGRPOConfig",
        "PersonalizedGRPOTrainer",
        "PersonalizedRLOOConfig",
        "PersonalizedRLOOTrainer",
    ],
    # from a conditioned reward model to per-condition preference pairs
    "labelling": ["LabelConfig", "label_pairs"],
    # downstream use
    "downstream": [
        "ConditionedRewardFunction",
        "push_to_hub",
        "save_personalized_model",
        "save_reward_model",
        "write_model_card",
    ],
    # a reward model served over HTTP (`trl-custom serve-reward`) and its client
    "serving": ["RemoteRewardScorer", "RewardServer", "ServeRewardConfig"],
}
__all__ = [name for names in _import_structure.values() for name in names]
_module_of = {name: module for module, names in _import_structure.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name not in _module_of:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_module_of[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # the same names, for type checkers and IDEs
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
    from .labelling import LabelConfig, label_pairs
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
    from .personalized_rl import (
        PersonalizedGRPOConfig,
        PersonalizedGRPOTrainer,
        PersonalizedRLOOConfig,
        PersonalizedRLOOTrainer,
    )
    from .record import ModelRecord
    from .serving import RemoteRewardScorer, RewardServer, ServeRewardConfig
    from .soft_tokens import ConditioningArguments, ConditioningSpec, SoftTokenConfig, SoftTokens
