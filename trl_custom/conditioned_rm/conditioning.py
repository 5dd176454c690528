# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The reward model's forward pass, shared by training and scoring: the condition's soft tokens (embedding modes,
through [`~trl_custom.soft_tokens.soft_token_forward`]) and padding-free packing, the reward read at each sequence's
last real token of a decoder."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn as nn

from ..models import unwrap_peft
from ..packing import VARLEN_PACKING_ATTENTION, attention_implementation
from ..soft_tokens import reward_head_forward, soft_token_forward


PACKED_HEAD_ERROR = (
    "condition_placement='reward_head' with padding_free=True: the condition vectors are added per padded row, so "
    "set padding_free=False (or put the condition in the input, condition_placement='input')."
)


def check_position_budget(config: Any, max_length: int | None, num_tokens: int) -> None:
    """Raise if `max_length` tokens plus `num_tokens` soft tokens exceed the positions of the model of `config`."""
    max_positions = getattr(config.get_text_config(), "max_position_embeddings", None)
    if max_length is not None and max_positions is not None and max_length + num_tokens > max_positions:
        soft = f" plus {num_tokens} condition tokens" if num_tokens else ""
        raise ValueError(
            f"max_length={max_length}{soft} exceeds the model's {max_positions} positions. Set max_length <= "
            f"{max_positions - num_tokens}."
        )


def uses_last_token_pooling(model: nn.Module) -> bool:
    """True for decoder reward models (a `score` head read at the last token), False for CLS-pooled encoders."""
    return hasattr(unwrap_peft(model), "score")


def reward_head(model: nn.Module) -> nn.Module:
    """The last-token reward head (`score`) of a (possibly PEFT-wrapped) decoder reward model."""
    return unwrap_peft(model).score


def reward_hooks(
    base_model: nn.Module,
    soft_tokens: torch.Tensor | None,
    padding_free: bool = False,
    restore_hidden_states: bool = False,
    placement: str = "after_first",
):
    """
    The hooks that make `base_model`'s calls inside the block read `soft_tokens` (`(sequences, K, hidden)`, after
    the first token; with `placement="reward_head"`, `(sequences, 1, width)` vectors at the reward head) and/or pack
    the sequences; a no-op context without either (the model runs as in TRL).
    """
    if soft_tokens is None and not padding_free:
        return contextlib.nullcontext()
    if placement == "reward_head" and soft_tokens is not None:
        if padding_free:
            raise ValueError(PACKED_HEAD_ERROR)
        return reward_head_forward(base_model, soft_tokens)
    decoder = uses_last_token_pooling(base_model)
    return soft_token_forward(
        base_model,
        soft_tokens,
        after_first=True,
        pack=padding_free,
        single_row=attention_implementation(base_model) in VARLEN_PACKING_ATTENTION,
        reward_head=reward_head(base_model) if decoder else None,
        restore_hidden_states=restore_hidden_states,
    )


def reward_forward(
    model: nn.Module,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    soft_tokens: torch.Tensor | None = None,
    output_hidden_states: bool = False,
    base_model: nn.Module | None = None,
    padding_free: bool = False,
    placement: str = "after_first",
) -> dict[str, Any]:
    """
    Rewards of a batch of sequences, with each sequence's soft tokens when given.

    Without soft tokens and packing this is exactly `model(input_ids, attention_mask)`, as in TRL's `RewardTrainer`.
    `model` is called as given (so a DDP/DeepSpeed wrapper sees the forward); `base_model` is its unwrapped module
    (defaults to `model`), which the hooks are set on. `placement`: where `soft_tokens` enter (`"reward_head"`: at
    the head, see [`~trl_custom.soft_tokens.reward_head_forward`]).

    Returns:
        `dict` with `rewards` (`(sequences,)`) and, with `output_hidden_states`, `hidden` (the last hidden states, in
        the layout of `input_ids`).
    """
    base_model = base_model or model
    hooks = reward_hooks(base_model, soft_tokens, padding_free, output_hidden_states, placement=placement)
    with hooks:
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=False,
            output_hidden_states=output_hidden_states,
        )
    result = {"rewards": outputs.logits.squeeze(-1)}
    if output_hidden_states:
        result["hidden"] = outputs.hidden_states[-1]
    return result
