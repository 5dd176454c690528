# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Loading a trained (conditioned) reward model and scoring responses with it."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import common_prefix_length

from ..models import load_model_or_adapter
from .conditioning import (
    ConditioningSpec,
    attach_condition_table,
    get_condition_table,
    load_condition_table_weights,
    reward_forward,
)
from .encoding import (
    TRUNCATION_CONFIG_ATTRIBUTE,
    apply_text_condition,
    encode_prompt,
    encode_sequence,
    render_reward_text,
    truncate_sequence,
)
from .model_settings import restore_adapter_settings
from .reward_head import apply_pooling, get_pooling


def load_reward_model(
    path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ConditioningSpec]:
    """
    Load a reward model saved by [`CustomRewardTrainer`] (or any sequence-classification reward model).

    Restores the LoRA adapter (when `adapter_config.json` is present, on top of its base model), the conditioning
    spec, in embedding mode the condition table, and how training read the inputs (truncation, `pooling="mean"`:
    recorded in `config.json`, or `trl_custom_settings.json` beside an adapter). The spec is also set as
    `model.trl_custom_conditioning`.

    Args:
        path (`str`): Directory written by `trainer.save_model(path)`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): Defaults to `AutoTokenizer.from_pretrained(path)`.
        **model_kwargs: Passed to `AutoModelForSequenceClassification.from_pretrained`.

    Returns:
        `(model, tokenizer, spec)`.
    """
    path = str(path)
    model_kwargs.setdefault("num_labels", 1)
    model = load_model_or_adapter(AutoModelForSequenceClassification, path, **model_kwargs)
    return _restore_saved_settings(model, path, tokenizer)


def load_reward_model_for_training(path: str, args: Any, trainer_kwargs: dict) -> tuple[PreTrainedModel, Any]:
    """
    The model of a folder saved by [`CustomRewardTrainer`], loaded as TRL's `RewardTrainer` loads a string `model`:
    `args.model_init_kwargs` (dtype, float32 unless given; `device_map`; `trust_remote_code`) and the trainer's
    `quantization_config` (popped from `trainer_kwargs`) go to TRL's `create_model_from_path`, then the condition
    table and input settings are restored as [`load_reward_model`] does. A LoRA adapter folder's adapter (and the
    reward head it saves) keeps training.

    Returns `(model, args)`: `args` is a copy without `model_init_kwargs`, which are used here (TRL would warn that an
    instantiated model ignores them).
    """
    from trl.trainer.utils import create_model_from_path

    init_kwargs = dict(args.model_init_kwargs or {})
    quantization_config = trainer_kwargs.pop("quantization_config", None)
    if quantization_config is not None:
        if "quantization_config" in init_kwargs:
            raise ValueError(
                "You set `quantization_config` both as a trainer argument and in `args.model_init_kwargs`. "
                "Please set it in only one place, preferably as a trainer argument."
            )
        init_kwargs["quantization_config"] = quantization_config
    if args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
        init_kwargs["device_map"] = None  # as TRL: distributed training requires device_map=None
    init_kwargs["num_labels"] = 1
    init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    model = load_model_or_adapter(
        AutoModelForSequenceClassification, path, create=create_model_from_path, trainable=True, **init_kwargs
    )
    tokenizer = trainer_kwargs.get("processing_class")
    model, _, _ = _restore_saved_settings(model, path, tokenizer if hasattr(tokenizer, "pad_token_id") else None)
    args = copy.copy(args)
    args.model_init_kwargs = None
    return model, args


def _restore_saved_settings(model, path: str, tokenizer):
    """The conditioning spec, condition table and input settings saved in `path`, put back on `model`."""
    spec = ConditioningSpec.load(path)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
    if model.config.get_text_config().pad_token_id is None:
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    if spec.mode == "embedding":
        table = attach_condition_table(model, spec)
        weights = load_condition_table_weights(path)
        if weights.shape != table.weight.shape:
            raise ValueError(
                f"{path}: the saved condition table has shape {tuple(weights.shape)}, but conditioning.json and the "
                f"model need {tuple(table.weight.shape)} (conditions + 1, tokens, hidden size)."
            )
        with torch.no_grad():
            table.weight.copy_(weights.to(table.weight.dtype))
    restore_adapter_settings(model, path)  # a LoRA folder's truncation and pooling
    apply_pooling(model, get_pooling(model))  # the pooling of training (`trl_custom_pooling` in config.json)
    model.trl_custom_conditioning = spec
    model.eval()
    return model, tokenizer, spec


class RewardScorer:
    """
    Scores `(prompt, response, condition)` triples with a reward model exactly as [`CustomRewardTrainer`] saw them
    (same template, soft tokens, EOS handling and truncation).

    Args:
        model ([`~transformers.PreTrainedModel`]): The reward model (with its condition table in embedding mode).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        spec ([`ConditioningSpec`], *optional*): How the model is conditioned; defaults to the model's own.
        max_length (`int`, *optional*, defaults to `512`): Longer sequences are truncated like in training.
        batch_size (`int`, *optional*, defaults to `16`): Sequences per forward pass.

    Example:

    ```python
    >>> scorer = RewardScorer.from_pretrained("outputs/dsp-rm")
    >>> scorer.score(["Explain gravity."], ["Gravity is ..."], conditions=["academy"])
    [1.93]
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: ConditioningSpec | None = None,
        max_length: int | None = 512,
        batch_size: int = 16,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.conditioning = spec or getattr(model, "trl_custom_conditioning", None) or ConditioningSpec(mode="none")
        self.table = get_condition_table(model) if self.conditioning.mode == "embedding" else None
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs: Any,
    ) -> RewardScorer:
        """Load with [`load_reward_model`]; `kwargs` go to the constructor (`max_length`, `batch_size`)."""
        model, tokenizer, spec = load_reward_model(path, tokenizer=tokenizer)
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, spec, **kwargs)

    def encode(self, prompt: Any, response: Any, condition: Any = None) -> list[int]:
        """Token ids of one input, condition rendered and truncated as in training (the model's saved
        `truncation_mode` / `max_prompt_length`)."""
        prompt, (response,) = apply_text_condition(self.conditioning, condition, prompt, [response])
        ids = encode_sequence(self.tokenizer, prompt, response)
        truncation = getattr(self.model.config, TRUNCATION_CONFIG_ATTRIBUTE, None) or {}
        prompt_length = None
        if truncation.get("max_prompt_length") is not None and prompt is not None:
            prompt_length = common_prefix_length(encode_prompt(self.tokenizer, prompt), ids)
        ids, _ = truncate_sequence(
            ids,
            self.max_length,
            prompt_length,
            truncation.get("truncation_mode", "head_tail"),
            truncation.get("max_prompt_length"),
        )
        return ids

    def collate(self, sequences: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded `input_ids` and `attention_mask` of encoded sequences, on the model's device."""
        width = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, ids in enumerate(sequences):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention_mask[i, : len(ids)] = 1
        device = next(self.model.parameters()).device
        return input_ids.to(device), attention_mask.to(device)

    def render_text(self, prompt: Any, response: Any, condition: Any = None) -> str:
        """The raw text of `(prompt, response, condition)` for a text pipeline, see [`render_reward_text`]."""
        pooling = get_pooling(self.model)
        if pooling != "model":
            raise ValueError(
                f"This reward model pools with pooling={pooling!r}, which a transformers text "
                "pipeline does not do (it would read the [CLS] pooler): score it with RewardScorer.score or "
                "ConditionedRewardFunction."
            )
        return render_reward_text(self.tokenizer, self.conditioning, prompt, response, condition)

    @torch.no_grad()
    def score(
        self,
        prompts: Sequence[Any] | None,
        responses: Sequence[Any],
        conditions: Sequence[Any] | None = None,
        progress: bool = False,
        desc: str = "Scoring",
    ) -> list[float]:
        """
        Rewards of `responses` to `prompts` (`None` for implicit-prompt data) under `conditions` (`None`: generic).
        """
        n = len(responses)
        prompts = [None] * n if prompts is None else list(prompts)
        conditions = [None] * n if conditions is None else list(conditions)
        if not len(prompts) == len(conditions) == n:
            raise ValueError(f"Got {len(prompts)} prompts, {n} responses and {len(conditions)} conditions.")
        encoded = [self.encode(p, r, c) for p, r, c in zip(prompts, responses, conditions, strict=True)]
        condition_ids = [
            self.conditioning.condition_id(c) if self.conditioning.mode != "none" else 0 for c in conditions
        ]
        order = sorted(range(n), key=lambda i: len(encoded[i]))  # similar lengths per batch: less padding
        rewards = [0.0] * n
        batches = range(0, n, self.batch_size)
        for start in tqdm(batches, desc=desc, disable=not progress):
            rows = order[start : start + self.batch_size]
            input_ids, attention_mask = self.collate([encoded[i] for i in rows])
            out = reward_forward(
                self.model,
                input_ids,
                attention_mask,
                condition_ids=torch.tensor([condition_ids[i] for i in rows], device=input_ids.device),
                table=self.table,
            )
            for j, i in enumerate(rows):
                rewards[i] = out["rewards"][j].float().item()
        return rewards
