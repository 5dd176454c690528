# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The conditioning options both trainers share, under the same names ([`ConditioningArguments`]), and the error a
renamed or removed option gets."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .spec import SOFT_TOKEN_KINDS, ConditioningSpec, SoftTokenConfig


# Options that only mean something when the condition is read from soft tokens.
SOFT_TOKEN_OPTIONS = ("condition_model", "condition_dim", "num_prototypes", "condition_learning_rate")


def check_renamed(config_class: type, kwargs: dict[str, Any]) -> None:
    """Refuse, naming the replacement, options of earlier versions (`config_class.RENAMED_OPTIONS`)."""
    renamed = getattr(config_class, "RENAMED_OPTIONS", {})
    for name in kwargs:
        if name in renamed:
            raise TypeError(f"{config_class.__name__}: `{name}` {renamed[name]}")


def did_you_mean(name: str, choices) -> str:
    """`"; did you mean --x?"` for the closest of `choices`, or `""`."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


@dataclass
class ConditioningArguments:
    r"""
    Conditioning options shared by [`CustomRewardConfig`] and [`PersonalizedDPOConfig`] (the same names and meaning
    in both).

    Parameters:
        condition_mode (`str`, *optional*, defaults to `"auto"`):
            How the model reads each row's condition; see the trainer's config for the modes it offers.
        condition_column (`str`):
            Dataset column holding each row's condition (a domain, a user id). Empty/`None`: the generic entry.
        conditions (`list[str]` or `None`, *optional*, defaults to `None`):
            Known condition values, in table order. If `None`, the sorted distinct values of the training dataset.
        strict_conditions (`bool`, *optional*, defaults to `False`):
            Raise on values not in `conditions` instead of giving them the generic entry.
        num_condition_tokens (`int`, *optional*, defaults to `4`):
            Soft tokens per condition.
        condition_model (`str`):
            The soft-token module: `"table"` (free tokens per condition), `"lowrank"` (generic tokens + a
            `condition_dim`-sized vector per condition times a shared basis) or `"prototype"` (generic tokens + a
            mixture, per condition, of `num_prototypes` shared prototypes). See [`~trl_custom.soft_tokens.SoftTokens`].
        condition_dim (`int`, *optional*, defaults to `32`):
            Size of a condition's vector (`lowrank`, `prototype`).
        num_prototypes (`int`, *optional*, defaults to `8`):
            Prototypes of `condition_model="prototype"`.
        condition_learning_rate (`float` or `None`, *optional*, defaults to `None`):
            Learning rate of the soft tokens (their own optimizer group, no weight decay); `None` uses
            `learning_rate`. They start at the scale of token embeddings (or as the generic entry) and must move far,
            so a rate well above the backbone's (e.g. 1e-2) makes the conditioning learn faster.
    """

    condition_mode: str = field(default="auto", metadata={"help": "How the model reads each row's condition."})
    condition_column: str = field(default="domain", metadata={"help": "Dataset column holding the condition."})
    conditions: list[str] | None = field(default=None, metadata={"help": "Known condition values, in table order."})
    strict_conditions: bool = field(default=False, metadata={"help": "Raise on unknown condition values."})
    num_condition_tokens: int = field(default=4, metadata={"help": "Soft tokens per condition."})
    condition_model: str = field(
        default="table", metadata={"help": "'table', 'lowrank' or 'prototype'.", "choices": SOFT_TOKEN_KINDS}
    )
    condition_dim: int = field(default=32, metadata={"help": "Size of a condition's vector (lowrank, prototype)."})
    num_prototypes: int = field(default=8, metadata={"help": "Prototypes of condition_model='prototype'."})
    condition_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the soft tokens (their own optimizer group)."}
    )

    def __new__(cls, *args, **kwargs):
        check_renamed(cls, kwargs)
        return super().__new__(cls)

    def __post_init__(self):
        super().__post_init__()
        if self.num_condition_tokens < 1:
            raise ValueError(f"num_condition_tokens must be >= 1, got {self.num_condition_tokens}.")
        if self.condition_model not in SOFT_TOKEN_KINDS:
            raise ValueError(f"condition_model={self.condition_model!r}: choose one of {SOFT_TOKEN_KINDS}.")
        for name in ("condition_dim", "num_prototypes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")

    def changed_soft_token_options(self) -> list[str]:
        """The soft-token options set to something else than their default (an error when no soft tokens are used)."""
        fields = type(self).__dataclass_fields__
        return [name for name in SOFT_TOKEN_OPTIONS if getattr(self, name) != fields[name].default]

    def soft_token_config(self, placement: str, num_features: int = 0) -> SoftTokenConfig:
        return SoftTokenConfig(
            kind=self.condition_model,
            num_tokens=1 if placement == "reward_head" else self.num_condition_tokens,  # one vector at the head
            dim=self.condition_dim,
            num_prototypes=self.num_prototypes,
            num_features=num_features,
            placement=placement,
        )

    def conditioning_spec(
        self, mode: str, conditions: list[str], placement: str, template: str | None = None, num_features: int = 0
    ) -> ConditioningSpec:
        """The [`ConditioningSpec`] these options describe, for a resolved `mode` and vocabulary."""
        uses_tokens = mode in ("embedding", "text+embedding")
        return ConditioningSpec(
            mode=mode,
            column=self.condition_column,
            conditions=list(conditions),
            template=template if template is not None else ConditioningSpec.template,
            strict=self.strict_conditions,
            tokens=self.soft_token_config(placement, num_features) if uses_tokens else None,
        )
