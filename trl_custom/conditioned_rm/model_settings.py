# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
How a reward model reads its inputs, recorded with it so that scorers read them as training did: the truncation
(`truncation_mode`, `max_prompt_length`) and the pooling (`pooling="mean"`). A full model keeps them in its
`config.json`; a LoRA adapter folder has no config.json of its own (its base model's is the pretrained one), so they
go to `trl_custom_settings.json` beside the adapter, and [`load_reward_model`] puts them back on the model's config.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch.nn as nn

from ..models import unwrap_peft
from .encoding import TRUNCATION_CONFIG_ATTRIBUTE
from .reward_head import POOLING_CONFIG_ATTRIBUTE, apply_pooling


SETTINGS_FILE = "trl_custom_settings.json"
SETTINGS_ATTRIBUTES = (TRUNCATION_CONFIG_ATTRIBUTE, POOLING_CONFIG_ATTRIBUTE)


def _config(model: nn.Module) -> Any:
    inner = unwrap_peft(model)
    return inner.config


def record_input_settings(model: nn.Module, args: Any) -> None:
    """
    Record a [`CustomRewardConfig`]'s truncation on the model's config (only when it is not the default, so a
    drop-in run's config.json stays TRL's) and apply its pooling ([`apply_pooling`], which records `"mean"`).
    """
    if args.truncation_mode != "head_tail" or args.max_prompt_length is not None:
        truncation = {"truncation_mode": args.truncation_mode, "max_prompt_length": args.max_prompt_length}
        setattr(_config(model), TRUNCATION_CONFIG_ATTRIBUTE, truncation)
    apply_pooling(model, args.pooling)


def saved_settings(directory: str | os.PathLike) -> dict[str, Any]:
    """The input settings of a saved reward model folder (its config.json, or the file beside its adapter)."""
    for name in (SETTINGS_FILE, "config.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return {k: v for k, v in json.load(f).items() if k in SETTINGS_ATTRIBUTES}
    return {}


def recorded_settings(model: nn.Module) -> dict[str, Any]:
    """The input settings recorded on the (possibly PEFT-wrapped) model's config."""
    config = _config(model)
    return {name: getattr(config, name) for name in SETTINGS_ATTRIBUTES if getattr(config, name, None) is not None}


def save_adapter_settings(model: nn.Module, directory: str | os.PathLike) -> None:
    """Write the settings of a PEFT-wrapped model beside its adapter (a full model has them in its config.json)."""
    settings = recorded_settings(model)
    if unwrap_peft(model) is not model and settings:  # a PEFT-wrapped model
        with open(os.path.join(directory, SETTINGS_FILE), "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=2)


def restore_adapter_settings(model: nn.Module, directory: str | os.PathLike) -> None:
    """Put the settings saved beside an adapter (if any) back on the model's config."""
    path = os.path.join(directory, SETTINGS_FILE)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        settings = json.load(f)
    unknown = sorted(set(settings) - set(SETTINGS_ATTRIBUTES))
    if unknown:
        raise ValueError(f"{path} holds unknown settings {unknown}: it was written by a newer trl-custom.")
    config = _config(model)
    for name, value in settings.items():
        setattr(config, name, value)
