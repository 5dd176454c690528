# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The reward head of a sequence-classification model: keeping it trained (and saved) under PEFT, and the pooling it
reads (the model's own, or the mean of the encoder's hidden states)."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from ..models import REWARD_HEAD_NAMES, unwrap_peft


logger = logging.getLogger(__name__)
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
    inner = unwrap_peft(model)
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


# ---------------------------------------------------------------------------------------------------- pooling
POOLINGS = ("model", "mean")
_MEAN_POOLING_FLAG = "_trl_custom_mean_pooling"  # set on an encoder whose pooled output is the mean (the hook's mark)


def _mean_pooled_output(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook on an encoder: its pooled output becomes the mean of its last hidden states over the mask."""
    hidden = output[0]
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], device=hidden.device)
    if mask.dim() != 2:
        raise ValueError(f"pooling='mean' needs a 2-D attention mask (batch, sequence), got {tuple(mask.shape)}.")
    weights = mask.to(torch.float32).unsqueeze(-1)
    pooled = ((hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)).to(hidden.dtype)
    if isinstance(output, tuple):
        return (output[0], pooled, *output[2:])
    output.pooler_output = pooled
    return output


def get_pooling(model: nn.Module) -> str:
    """The pooling `model` applies: `"mean"` once [`apply_pooling`] made it so, else `"model"`."""
    encoder = getattr(unwrap_peft(model), "base_model", None)
    return "mean" if getattr(encoder, _MEAN_POOLING_FLAG, False) else "model"


def apply_pooling(model: nn.Module, pooling: str) -> None:
    """
    Make `model` read its reward from the pooling `pooling` (`CustomRewardConfig.pooling`).

    `"model"` leaves the model as it is (its own head: BERT's `[CLS]` pooler, a decoder's last token). `"mean"` makes
    the encoder's pooled output the mean of its last hidden states over the attention mask (the sentence embedding that
    sentence-transformers encoders such as all-MiniLM-L6-v2 were trained to produce), which the classification head
    then reads: a forward hook on the encoder, no new parameter (the `[CLS]` pooler's weights are kept, unused). The
    pooling is saved in the model's record (`trl_custom.json`), so that [`load_reward_model`] pools the same way after
    a reload. Models whose head reads no pooler (decoders, RoBERTa-style heads) are refused.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: choose one of {POOLINGS}.")
    if pooling == "model":
        return
    model = unwrap_peft(model)  # under a PEFT wrapper
    encoder = getattr(model, "base_model", None)
    if encoder is None or encoder is model or not isinstance(getattr(encoder, "pooler", None), nn.Module):
        raise ValueError(
            f"pooling='mean' replaces the pooled output of an encoder whose sequence-classification head reads a "
            f"pooler (BERT, MiniLM, ALBERT, ...); {type(model).__name__} has none (decoders read the last token, "
            "RoBERTa-style heads the first one): use pooling='model'."
        )
    if not getattr(encoder, _MEAN_POOLING_FLAG, False):
        encoder.register_forward_hook(_mean_pooled_output, with_kwargs=True)
        setattr(encoder, _MEAN_POOLING_FLAG, True)
        encoder.pooler.requires_grad_(False)  # its output is replaced: no gradient reaches it (DDP, optimizer)
