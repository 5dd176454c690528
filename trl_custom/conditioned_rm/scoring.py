# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Loading a trained (conditioned) reward model and scoring responses with it, as training read its inputs."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.data_utils import common_prefix_length

from ..models import load_model_or_adapter
from ..record import ModelRecord, restore_saved
from ..soft_tokens import ConditioningSpec, get_soft_tokens
from .conditioning import check_position_budget, reward_forward
from .encoding import apply_text_condition, encode_prompt, encode_sequence, render_reward_text, truncate_sequence
from .reward_head import apply_pooling, get_pooling


logger = logging.getLogger(__name__)


def load_reward_model(
    path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ConditioningSpec]:
    """
    Load a reward model saved by [`CustomRewardTrainer`] (or any sequence-classification reward model).

    Restores the LoRA adapter (when `adapter_config.json` is present, on top of its base model), the model's record
    (`trl_custom.json`: conditioning, truncation, `max_length`, pooling; also read from trl-custom 0.1.0's files), the
    soft tokens of the embedding modes and the pooling. The record rides on the model (`model.trl_custom_record`),
    where [`RewardScorer`] and the exporters read it.

    Args:
        path (`str`): Directory written by `trainer.save_model(path)`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): Defaults to `AutoTokenizer.from_pretrained(path)`.
        **model_kwargs: Passed to `AutoModelForSequenceClassification.from_pretrained`.

    Returns:
        `(model, tokenizer, conditioning)`.
    """
    path = str(path)
    model_kwargs.setdefault("num_labels", 1)
    model = load_model_or_adapter(AutoModelForSequenceClassification, path, **model_kwargs)
    model, tokenizer, record = _restore(model, path, tokenizer)
    model.eval()
    return model, tokenizer, record.conditioning


def load_reward_model_for_training(path: str, args: Any, trainer_kwargs: dict) -> tuple[PreTrainedModel, Any]:
    """
    The model of a folder saved by [`CustomRewardTrainer`], loaded as TRL's `RewardTrainer` loads a string `model`:
    `args.model_init_kwargs` (dtype, float32 unless given; `device_map`; `trust_remote_code`) and the trainer's
    `quantization_config` (popped from `trainer_kwargs`) go to TRL's `create_model_from_path` (a block mirrored from
    TRL's `RewardTrainer.__init__`, fingerprinted in `trl_custom.trl_seams.MIRRORED`), then the record, soft tokens
    and pooling are restored as [`load_reward_model`] does. A LoRA adapter folder's adapter (and the reward head it
    saves) keeps training.

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
    _restore(model, path, tokenizer if hasattr(tokenizer, "pad_token_id") else None)
    args = copy.copy(args)
    args.model_init_kwargs = None
    return model, args


def _restore(model, path: str, tokenizer):
    """The record, soft tokens and pooling saved in `path`, put back on `model`; the tokenizer."""
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
    if model.config.get_text_config().pad_token_id is None:
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    record = restore_saved(model, path, kind="reward_model")
    apply_pooling(model, record.pooling)
    return model, tokenizer, record


def resolve_max_length(model: PreTrainedModel, max_length: int | None, num_soft_tokens: int = 0) -> int | None:
    """
    The `max_length` a scorer cuts at: the one given (refused when longer than the model's positions allow), or for
    `None` the training one from the model's record (capped at what the positions allow).
    """
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    limit = None if positions is None else positions - num_soft_tokens
    if max_length is not None:
        check_position_budget(model.config, max_length, num_soft_tokens)
        return max_length
    record = ModelRecord.of(model)
    if record.legacy:
        logger.info(
            f"This reward model was saved by trl-custom 0.1.0, which did not record its training max_length: "
            f"scoring at {record.max_length} tokens. Pass max_length= to change it."
        )
    if record.max_length is None or (limit is not None and record.max_length > limit):
        return limit  # trained without a limit (or one the model cannot reach): the positions are the limit
    return record.max_length


class RewardScorer:
    """
    Scores `(prompt, response, condition)` triples with a reward model exactly as [`CustomRewardTrainer`] saw them
    (same template, soft tokens, EOS handling, truncation and pooling, read from the model's record).

    Args:
        model ([`~transformers.PreTrainedModel`]): The reward model (with its soft tokens in the embedding modes).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        conditioning ([`ConditioningSpec`], *optional*): How the model is conditioned; defaults to its record's.
        max_length (`int`, *optional*): Longer sequences are cut as in training. `None` (the default): the training
            `max_length` saved with the model (512 for folders of trl-custom 0.1.0, which did not record it), capped
            at the model's positions; an explicit value wins, but not one beyond the model's positions.
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
        conditioning: ConditioningSpec | None = None,
        max_length: int | None = None,
        batch_size: int = 16,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.record = ModelRecord.of(model)
        self.conditioning = conditioning or self.record.conditioning
        self.soft_tokens = get_soft_tokens(model) if self.conditioning.uses_soft_tokens else None
        if self.conditioning.uses_soft_tokens and self.soft_tokens is None:
            raise ValueError(
                f"The conditioning is in {self.conditioning.mode!r} mode but the model has no soft tokens: load it "
                "with load_reward_model / RewardScorer.from_pretrained, or pass the model of a CustomRewardTrainer."
            )
        num_soft = self.conditioning.tokens.num_input_tokens if self.soft_tokens is not None else 0
        self.max_length = resolve_max_length(model, max_length, num_soft)
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
        model, tokenizer, conditioning = load_reward_model(path, tokenizer=tokenizer)
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, conditioning, **kwargs)

    @property
    def placement(self) -> str:
        """Where the soft tokens enter the model (`"after_first"`, or `"reward_head"`); see [`SoftTokenConfig`]."""
        return self.soft_tokens.config.placement if self.soft_tokens is not None else "after_first"

    def encode(self, prompt: Any, response: Any, condition: Any = None) -> list[int]:
        """Token ids of one input, the condition rendered and the sequence cut as in training."""
        prompt, (response,) = apply_text_condition(self.conditioning, condition, prompt, [response])
        ids = encode_sequence(self.tokenizer, prompt, response)
        max_prompt_length = self.record.max_prompt_length
        prompt_length = None
        if max_prompt_length is not None and prompt is not None:
            prompt_length = common_prefix_length(encode_prompt(self.tokenizer, prompt), ids)
        ids, _ = truncate_sequence(
            ids, self.max_length, prompt_length, self.record.truncation_mode or "head_tail", max_prompt_length
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
                f"This reward model pools with pooling={pooling!r}, which a transformers text pipeline does not do "
                "(it would read the [CLS] pooler): score it with RewardScorer.score or ConditionedRewardFunction."
            )
        return render_reward_text(self.tokenizer, self.conditioning, prompt, response, condition)

    def condition_ids(self, conditions: Sequence[Any]) -> list[int]:
        """Soft-token ids of condition values (strict models refuse unknown ones, naming them)."""
        if self.conditioning.mode == "none":
            return [0] * len(conditions)
        unknown = self.conditioning.unknown_values(conditions) if self.conditioning.strict else []
        if unknown:
            self.conditioning.condition_id(unknown[0], f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
        return [self.conditioning.condition_id(c) for c in conditions]

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
        Rewards of `responses` to `prompts` (`None` for implicit-prompt data) under `conditions` (`None`: generic),
        batched across conditions (one forward for rows of different conditions).
        """
        n = len(responses)
        prompts = [None] * n if prompts is None else list(prompts)
        conditions = [None] * n if conditions is None else list(conditions)
        if not len(prompts) == len(conditions) == n:
            raise ValueError(f"Got {len(prompts)} prompts, {n} responses and {len(conditions)} conditions.")
        condition_ids = self.condition_ids(conditions)
        encoded = [self.encode(p, r, c) for p, r, c in zip(prompts, responses, conditions, strict=True)]
        order = sorted(range(n), key=lambda i: len(encoded[i]))  # similar lengths per batch: less padding
        rewards = [0.0] * n
        for start in tqdm(range(0, n, self.batch_size), desc=desc, disable=not progress):
            rows = order[start : start + self.batch_size]
            input_ids, attention_mask = self.collate([encoded[i] for i in rows])
            soft = None
            if self.soft_tokens is not None:
                soft = self.soft_tokens(torch.tensor([condition_ids[i] for i in rows], device=input_ids.device))
            out = reward_forward(self.model, input_ids, attention_mask, soft_tokens=soft, placement=self.placement)
            for j, i in enumerate(rows):
                rewards[i] = out["rewards"][j].float().item()
        return rewards
