# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Extra modules carried by a Hugging Face model as named submodules (the condition table, the user model): attach and
find them, size them from the input embeddings (also under ZeRO-3), split them out of a state dict for saving, and
give them their own learning rate.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from .models import unwrap_peft


def find_attached(model: nn.Module, attribute: str, module_class: type[nn.Module]) -> nn.Module | None:
    """The `module_class` instance attached as `attribute` anywhere in a (PEFT/DDP-wrapped) model, if any."""
    for module in model.modules():
        found = getattr(module, attribute, None)
        if isinstance(found, module_class):
            return found
    return None


def attach(model: nn.Module, attribute: str, module: nn.Module) -> nn.Module:
    """
    Register `module` as `attribute` of the underlying `PreTrainedModel` (the PEFT base model when wrapped). Attach
    after PEFT wrapping: the module then stays trainable, and the optimizer and DDP/DeepSpeed wrappers see it.
    """
    owner = unwrap_peft(model)
    setattr(owner, attribute, module)
    return module


@dataclass
class EmbeddingStats:
    """Width, spread and placement of a model's input embeddings (what soft-token tables are sized and set up from)."""

    hidden_size: int
    device: torch.device
    dtype: torch.dtype
    std: float | None = None  # only when asked for: it reads (under ZeRO-3: gathers) the whole matrix


def is_zero3_partitioned(param: torch.Tensor) -> bool:
    """Whether DeepSpeed ZeRO-3 has partitioned `param` (its local tensor is then an empty shard)."""
    return hasattr(param, "ds_id")


def uses_zero3(args) -> bool:
    """Whether the training arguments run DeepSpeed ZeRO stage 3 (from an accelerate config or `--deepspeed`)."""
    plugin = getattr(args, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


def input_embedding_stats(model: nn.Module, with_std: bool = False) -> EmbeddingStats:
    """
    `EmbeddingStats` of `model.get_input_embeddings()`, also under DeepSpeed ZeRO-3, where the local weight is an
    empty shard: the width comes from the full shape (`ds_shape`), and the matrix is gathered only for `with_std`.
    """
    weight = model.get_input_embeddings().weight
    stats = EmbeddingStats(
        hidden_size=getattr(weight, "ds_shape", weight.shape)[-1], device=weight.device, dtype=weight.dtype
    )
    if with_std:
        gathered = nullcontext()
        if is_zero3_partitioned(weight):
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters([weight], modifier_rank=None)
        with gathered:
            stats.std = float(weight.detach().float().std())
    return stats


def split_attached_state(state_dict: dict, attribute: str) -> tuple[dict, dict]:
    """
    Split a model's `state_dict` into the model's own entries and those of the module attached as `attribute`
    (keyed relative to it, e.g. `"weight"`), which is saved in its own files so that the model folder stays a plain
    Hugging Face model.
    """
    prefix = f"{attribute}."
    own = {key: value for key, value in state_dict.items() if prefix not in key}
    attached = {key.split(prefix, 1)[1]: value for key, value in state_dict.items() if prefix in key}
    return own, attached


def with_own_learning_rate(optimizer, module: nn.Module, learning_rate: float | None):
    """Move `module`'s parameters into their own optimizer group (no weight decay) with `learning_rate`."""
    if learning_rate is None:
        return optimizer
    params = list(module.parameters())
    ids = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": params, "lr": learning_rate, "weight_decay": 0.0})
    return optimizer
