# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""What a model is conditioned on and how: the vocabulary of conditions (domains or users) with its generic entry,
and the shape of the soft tokens that carry a condition into the model.

One [`ConditioningSpec`] serves reward models and policies alike:

- `mode`: `"none"`, `"text"` (the condition rendered into the input with `template`), `"embedding"` (learned soft
  tokens) or `"text+embedding"` (both);
- `conditions`: the values seen in training, in table order. Id 0 is the *generic* entry: what a missing value
  gets and, unless `strict`, an unknown one;
- `tokens` ([`SoftTokenConfig`]): in the embedding modes, the soft-token module's variant and size and where the
  condition enters (`"after_first"`: soft tokens after BOS/CLS, reward models; `"prepend"`: before the input,
  policies; `"reward_head"`: a vector per condition at a reward model's head, over the backbone's pooled features).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


GENERIC = "generic"
CONDITION_MODES = ("none", "text", "embedding", "text+embedding")
SOFT_TOKEN_KINDS = ("table", "lowrank", "prototype")
PLACEMENTS = ("after_first", "prepend", "reward_head")
DEFAULT_TEMPLATE = "Preference domain: {condition}.\n\n"


def is_missing(value: Any) -> bool:
    """Whether a condition value means "no condition": `None`, NaN or `""`."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


@dataclass
class SoftTokenConfig:
    """
    Shape of a [`~trl_custom.soft_tokens.SoftTokens`] module: `num_tokens` soft tokens per condition, as one of three
    variants of the same table (see the module's docstring for the formulas), and where they enter the model.

    Args:
        kind (`str`): `"table"` (free `num_tokens x hidden_size` tokens per condition), `"lowrank"` (a shared generic
            part plus a `dim`-sized vector per condition times a shared basis) or `"prototype"` (the generic part
            plus a softmax mixture, per condition, of `num_prototypes` shared prototypes).
        num_tokens (`int`): Soft tokens per condition.
        hidden_size (`int`): Width of the model's input embeddings.
        dim (`int`): Size of a condition's vector (`lowrank`: its rank; `prototype`: the prototypes' width).
        num_prototypes (`int`): Prototypes of the `prototype` variant.
        num_features (`int`): Size of optional per-row feature vectors added through a linear map (not `table`).
        placement (`str`): `"after_first"` (inserted after the first token: reward models, BOS/CLS stays first),
            `"prepend"` (before the first token: policies) or `"reward_head"` (reward models: not in the input; the
            condition's one "token" is a vector `u_c` of the head's input width added to the reward head, `reward =
            head(f) + u_c . f` with `f` the features the head reads, see [`~trl_custom.soft_tokens.head`];
            `hidden_size` is then the head's input width and `num_tokens` is 1).
    """

    kind: str = "table"
    num_tokens: int = 4
    hidden_size: int = 0
    dim: int = 32
    num_prototypes: int = 8
    num_features: int = 0
    placement: str = "after_first"

    def __post_init__(self):
        if self.kind not in SOFT_TOKEN_KINDS:
            raise ValueError(f"Soft-token kind {self.kind!r}: choose one of {SOFT_TOKEN_KINDS}.")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"Soft-token placement {self.placement!r}: choose one of {PLACEMENTS}.")
        for name in ("num_tokens", "dim", "num_prototypes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.kind == "table" and self.num_features:
            raise ValueError("Condition features need a 'lowrank' or 'prototype' condition model, not 'table'.")
        if self.placement == "reward_head" and self.num_tokens != 1:
            raise ValueError(
                f"num_tokens={self.num_tokens} with placement='reward_head': a condition is one vector at the reward "
                "head (num_tokens=1); soft tokens in the input are placement 'after_first'."
            )

    @property
    def num_input_tokens(self) -> int:
        """Positions the soft tokens take in the model's input (0 at the reward head)."""
        return 0 if self.placement == "reward_head" else self.num_tokens


@dataclass
class ConditioningSpec:
    """
    The conditioning of a model: what it was conditioned on and how. Saved in the model's record
    ([`~trl_custom.record.ModelRecord`], `trl_custom.json`).

    Args:
        mode (`str`): `"none"`, `"text"`, `"embedding"` or `"text+embedding"`.
        column (`str`): Dataset column holding the condition (e.g. `"domain"` or `"user_id"`).
        conditions (`list[str]`): The values seen in training. Condition id `i + 1` is `conditions[i]`; id 0 is the
            generic entry.
        template (`str`): Template with a `{condition}` field, rendered in the text modes: prefix of the prompt
            (standard data) or system message (conversational data).
        strict (`bool`): Raise on unknown values instead of giving them the generic entry.
        tokens ([`SoftTokenConfig`] or `None`): The soft tokens of the embedding modes.
    """

    mode: str = "none"
    column: str = "domain"
    conditions: list[str] = field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    strict: bool = False
    tokens: SoftTokenConfig | None = None

    def __post_init__(self):
        if self.mode not in CONDITION_MODES:
            raise ValueError(f"Unknown condition mode {self.mode!r}; choose one of {CONDITION_MODES}.")
        self.conditions = [str(c) for c in self.conditions]
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"Duplicate values in `conditions`: {self.conditions}.")
        if GENERIC in self.conditions:
            raise ValueError(f"{GENERIC!r} names the generic entry (id 0): rename that condition value.")
        if isinstance(self.tokens, dict):
            self.tokens = SoftTokenConfig(**self.tokens)
        if self.uses_soft_tokens and self.tokens is None:
            self.tokens = SoftTokenConfig()
        if self.renders_text and "{condition}" not in self.template:
            raise ValueError(f"template={self.template!r} has no '{{condition}}' field.")

    @property
    def renders_text(self) -> bool:
        """Whether the condition is rendered into the input text (`"text"`, `"text+embedding"`)."""
        return self.mode in ("text", "text+embedding")

    @property
    def uses_soft_tokens(self) -> bool:
        """Whether the model reads the condition from soft tokens (`"embedding"`, `"text+embedding"`)."""
        return self.mode in ("embedding", "text+embedding")

    @property
    def names(self) -> list[str]:
        """Name of each condition id: id 0 is the generic entry."""
        return [GENERIC] + self.conditions

    def is_known(self, value: Any) -> bool:
        """Whether `value` was seen in training (a missing value is the generic entry, known)."""
        return is_missing(value) or str(value) in self.conditions

    def condition_id(self, value: Any, where: str = "") -> int:
        """Id of a condition value: 0 (generic) for missing values and, unless strict, for unknown ones."""
        if is_missing(value):
            return 0
        try:
            return self.conditions.index(str(value)) + 1
        except ValueError:
            if self.strict:
                raise ValueError(
                    f"Unknown {self.column}={value!r}{where}; known values: {_listed(self.conditions)}. Add it to "
                    "`conditions`, fit it with fit_new_condition, or set `strict_conditions=False` to give it the "
                    "generic entry."
                ) from None
            return 0

    def unknown_values(self, values) -> list[str]:
        """The distinct values of `values` not seen in training (missing values excluded), sorted."""
        return sorted({str(v) for v in values if not self.is_known(v)})

    def render(self, value: Any) -> str:
        """Text-mode prefix for a condition value (`""` for a missing value: the generic condition)."""
        return "" if is_missing(value) else self.template.format(condition=value)

    def how_unknown_is_scored(self) -> str:
        """How a value not seen in training is read by a non-strict model (for reports)."""
        return {
            "none": "not conditioned",
            "text": "rendered into the template (zero-shot)",
            "embedding": "scored with the generic entry",
            "text+embedding": "rendered into the template, with the generic entry's soft tokens",
        }[self.mode]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _listed(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} values)"
