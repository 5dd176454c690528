# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The reward head of a sequence-classification model, and keeping it trained (and saved) under PEFT."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModelForSequenceClassification


logger = logging.getLogger(__name__)

# `score`: decoder reward models (Llama, Qwen2, ...); `classifier`: encoders (BERT, MiniLM, RoBERTa, DeBERTa, ...).
REWARD_HEAD_NAMES = ("score", "classifier")
# PEFT task types whose wrappers need a generative model (`prepare_inputs_for_generation`).
GENERATIVE_TASK_TYPES = ("CAUSAL_LM", "SEQ_2_SEQ_LM")


def reward_head_name(model: str | nn.Module, args: Any = None) -> str | None:
    """
    Name of the reward head module (`"score"` or `"classifier"`) of a (possibly PEFT-wrapped) sequence-classification
    model, or of the one `AutoModelForSequenceClassification` builds for the model id / path `model` (instantiated on
    the meta device from its config: nothing is loaded). `None` when the model has neither.
    """
    if isinstance(model, str):
        init_kwargs = getattr(args, "model_init_kwargs", None) or {}
        trust_remote_code = getattr(args, "trust_remote_code", False)
        config = AutoConfig.from_pretrained(
            model, revision=init_kwargs.get("revision"), trust_remote_code=trust_remote_code
        )
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return next((name for name in REWARD_HEAD_NAMES if isinstance(getattr(inner, name, None), nn.Module)), None)


def _targets(peft_config: Any, name: str) -> bool:
    """Whether the adapter itself (e.g. LoRA's `target_modules`) is applied to the module `name`."""
    targets = getattr(peft_config, "target_modules", None)
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return name in (targets or ())


def with_trained_reward_head(peft_config: Any, model: str | nn.Module, args: Any = None) -> Any:
    """
    `peft_config`, or a copy of it with the reward head added to `modules_to_save` when the adapter would leave the
    head frozen at its random initialization and out of the saved adapter (a `task_type` other than `"SEQ_CLS"`,
    e.g. TRL's plain `LoraConfig()`), with a warning, as TRL does for `lm_head` when a chat template adds tokens.

    With `task_type="SEQ_CLS"` PEFT trains and saves the head itself; a head already in `modules_to_save` or targeted
    by the adapter is left as configured. A generative `task_type` (`"CAUSAL_LM"`, `"SEQ_2_SEQ_LM"`), which PEFT
    cannot apply to a sequence classifier, is refused with the fix.
    """
    if peft_config is None:
        return None
    task_type = getattr(peft_config, "task_type", None)
    task_type = str(getattr(task_type, "value", task_type) or "") or None
    if task_type == "SEQ_CLS":
        return peft_config
    if task_type in GENERATIVE_TASK_TYPES:
        raise ValueError(
            f"The PEFT config has task_type={task_type!r}, which wraps a generative model: PEFT cannot apply it to "
            "a sequence-classification reward model (it fails looking up `prepare_inputs_for_generation`, under "
            "TRL's RewardTrainer too). Set `task_type='SEQ_CLS'` (recipes: `lora_task_type: SEQ_CLS`, which TRL's "
            "`ModelConfig` defaults to 'CAUSAL_LM'), or leave `task_type` unset."
        )
    head = reward_head_name(model, args)
    modules_to_save = list(getattr(peft_config, "modules_to_save", None) or [])
    if head is None:
        logger.warning(
            f"The model has no reward head named {' or '.join(REWARD_HEAD_NAMES)}, so it cannot be added to the PEFT "
            f"config's `modules_to_save` (task_type={task_type!r}): add the head's module name to `modules_to_save` "
            "yourself, or it stays frozen at its initialization."
        )
        return peft_config
    if head in modules_to_save or _targets(peft_config, head):
        return peft_config
    logger.warning(
        f"The PEFT config (task_type={task_type!r}) does not train the reward head '{head}': it would stay at its "
        f"random initialization and be left out of the saved adapter, so it is added to `modules_to_save`. To remove "
        f"this warning, set `modules_to_save=['{head}']` (recipes: `lora_modules_to_save: [{head}]`) or "
        "`task_type='SEQ_CLS'` (recipes: `lora_task_type: SEQ_CLS`) in the PEFT config."
    )
    peft_config = copy.copy(peft_config)  # the caller's config is left as it was
    peft_config.modules_to_save = modules_to_save + [head]
    return peft_config
