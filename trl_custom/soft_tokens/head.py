# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""A condition at a reward model's head instead of in its input (`SoftTokenConfig(placement="reward_head")`).

LoRe's form: the backbone reads the text alone, and the condition `c` (a user) adds a linear term over the features
`f(x)` that the reward head reads (an encoder's pooled output; a decoder's hidden state at the token its reward is
read from):

    reward_c(x) = head(f(x)) + u_c . f(x)

where `u_c` is the condition's one "soft token" of [`SoftTokens`] (width: the head's input), so the three variants are
three user models at the head:

- `"table"`: a free `u_c` per condition: one linear reward per user;
- `"lowrank"`: `u_c = g + B z_c`: `dim` basis rewards `B_j . f(x)` shared by everyone, mixed by the user's
  `dim`-sized vector `z_c` (LoRe);
- `"prototype"`: `u_c = g + B (softmax(w_c) @ P)`: `num_prototypes` basis rewards `(B P_k) . f(x)`, mixed by the
  user's weights on the simplex (PAL's mixture of prototypes, LoRe's simplex weights).

Id 0 (the generic entry) adds `u_0` (the table's row 0, or `g`); all start at zero, i.e. as the model's own head. The
term is added by a forward hook on the head ([`reward_head_forward`]), so TRL's forward, pooling and loss run
unchanged; with a frozen backbone `f(x)` does not depend on the user, so [`head_features`] computes it once and a user
is fitted on it from a handful of pairs in milliseconds (only `z_c` / `w_c` change).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn as nn

from ..models import REWARD_HEAD_NAMES, reward_head_module


def head_linear(model: nn.Module) -> nn.Linear:
    """
    The linear layer of a (possibly PEFT-wrapped) reward model's head, `score` or `classifier`; a head that is not
    one linear layer over the pooled or per-token features (RoBERTa-style heads pool inside themselves) is refused.
    """
    head = reward_head_module(model)
    inner = head
    for attribute in ("original_module", "base_layer"):  # PEFT's modules_to_save wrapper, a LoRA layer
        inner = getattr(inner, attribute, inner)
    if not isinstance(inner, nn.Linear):
        found = "no reward head" if head is None else f"a {type(inner).__name__} reward head"
        raise ValueError(
            f"placement='reward_head' adds the condition to a reward head that is one linear layer named "
            f"{' or '.join(REWARD_HEAD_NAMES)} (BERT/MiniLM, Llama, Qwen2, ...); {type(model).__name__} has {found}. "
            "Put the condition in the input instead (condition_placement='input')."
        )
    return inner


def add_head_term(features: torch.Tensor, output: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """`output + vectors . features`: the head's output `(rows, 1)` or `(rows, length, 1)` for its input `features`
    `(rows, width)` or `(rows, length, width)`, with one condition vector `(rows, width)` per row."""
    if features.dim() == 3:
        vectors = vectors.unsqueeze(1)
    return output + (features * vectors.to(features.dtype)).sum(-1, keepdim=True).to(output.dtype)


@contextlib.contextmanager
def reward_head_forward(model: nn.Module, vectors: torch.Tensor):
    """
    Inside the block, the reward head of `model` (as [`head_linear`] finds it) adds `vectors . f` to its output, one
    vector per row of each call (`(rows, width)`, or `(rows, 1, width)` as [`SoftTokens`] returns them).
    """
    vectors = vectors.reshape(vectors.shape[0], -1)

    def hook(module, args, output):
        features = args[0]
        if features.shape[0] != vectors.shape[0] or output.shape[:-1] != features.shape[:-1] or output.shape[-1] != 1:
            raise ValueError(
                f"The reward head read features {tuple(features.shape)} and returned {tuple(output.shape)}, with "
                f"{vectors.shape[0]} condition vectors: placement='reward_head' needs one reward per row (or per "
                "token) from a linear head, one condition per row."
            )
        return add_head_term(features, output, vectors)

    head_linear(model)  # refuse heads the term cannot be added to
    handle = reward_head_module(model).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def head_features(model: nn.Module, run: Callable[[], torch.Tensor], num_rows: int) -> tuple[torch.Tensor, ...]:
    """
    `(rewards, features)` of the rows of `run()` (a call of `model` returning `(num_rows,)` rewards): the rewards of
    the model's own head and the features `f(x)` it read at each row's reward (`(num_rows, width)`, float32), exact
    for any pooling (the gradient of the rewards with respect to a zero condition vector). With the model frozen,
    `reward_c(x) = rewards + u_c . features` for every condition, without running the model again.
    """
    linear = head_linear(model)
    probe = torch.zeros(num_rows, linear.in_features, device=linear.weight.device, requires_grad=True)
    with torch.enable_grad(), reward_head_forward(model, probe):
        rewards = run()
    (features,) = torch.autograd.grad(rewards.sum(), probe)
    return rewards.detach(), features
