# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Extra modules (condition table, user model) carried by a Hugging Face model as named submodules."""

from __future__ import annotations

import torch.nn as nn


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
    owner = model.get_base_model() if hasattr(model, "get_base_model") else model
    setattr(owner, attribute, module)
    return module
