# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Using a personalized policy: load it, generate for a user, fit a new user from a few preference pairs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.dpo_trainer import DataCollatorForPreference

from .. import trl_seams
from ..models import load_model_or_adapter
from ..record import ModelRecord, restore_saved
from ..soft_tokens import SoftTokens, embed_with_soft_tokens, fit_new_row, get_soft_tokens, soft_token_forward


def load_personalized_model(
    path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, SoftTokens | None]:
    """
    Load a policy saved by [`PersonalizedDPOTrainer`] in one call: the causal LM (or its base + LoRA adapter), its
    tokenizer, its record (`trl_custom.json`, or trl-custom 0.1.0's `user_model.json`) and its user model (soft
    tokens, attached to the model; `None` for a policy trained without users).

    Returns:
        `(model, tokenizer, soft_tokens)`.
    """
    path = str(path)
    model = load_model_or_adapter(AutoModelForCausalLM, path, **model_kwargs)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
    restore_saved(model, path, kind="policy")
    model.eval()
    return model, tokenizer, get_soft_tokens(model)


def _user_model(model, soft_tokens):
    soft_tokens = soft_tokens if soft_tokens is not None else get_soft_tokens(model)
    if soft_tokens is None:
        raise ValueError(
            "This policy has no user model (soft tokens): load one trained with users by load_personalized_model, "
            "or pass `soft_tokens=`."
        )
    return soft_tokens


def user_ids(model, users: Sequence[Any], device=None) -> torch.Tensor:
    """Soft-token ids of user ids (`None`/unknown: the generic user; strict policies refuse unknown ones)."""
    spec = ModelRecord.of(model, kind="policy").conditioning
    return torch.tensor([spec.condition_id(u, " (generation)") for u in users], device=device)


def _prompt_texts(tokenizer, prompts):
    return [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) if isinstance(p, list) else p
        for p in prompts
    ]


@torch.no_grad()
def generate_for_user(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | list[dict]],
    users: Sequence[Any] | Any = None,
    soft_tokens: SoftTokens | None = None,
    **generate_kwargs: Any,
) -> list[str]:
    """
    Generate completions of `prompts` for `users` (one id for all prompts, or one per prompt; `None` or unknown ids =
    the generic user), each user's soft tokens in front of its left-padded prompt. Returns the decoded new text.
    """
    soft_tokens = _user_model(model, soft_tokens)
    if users is None or isinstance(users, (str, int)):
        users = [users] * len(prompts)
    device = model.get_input_embeddings().weight.device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(
            _prompt_texts(tokenizer, prompts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=not isinstance(prompts[0], list),
        )
    finally:
        tokenizer.padding_side = side
    tokens = soft_tokens(user_ids(model, users, device))
    inputs = embed_with_soft_tokens(
        model, tokens, encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    )
    inputs.pop("position_ids")  # generation computes them from the mask: cumsum(mask) - 1, the same
    generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    output = model.generate(**inputs, **generate_kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def sequence_log_probs(model, batch: dict[str, torch.Tensor], soft_tokens: torch.Tensor | None) -> torch.Tensor:
    """Summed completion log-probs of each row of a DPO batch, with `soft_tokens` in front when given (the trainer's
    injection)."""
    input_ids, attention_mask, completion_mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    hooks = soft_token_forward(model, soft_tokens) if soft_tokens is not None else contextlib.nullcontext()
    with hooks:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = log_probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * completion_mask[:, 1:]).sum(dim=1)


def preference_batches(model, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[dict]):
    """`pairs` (`prompt`, `chosen`, `rejected`; standard or conversational) tokenized by TRL's `DPOTrainer` and a
    collator that batches them as the trainer did (the policy's recorded `max_length` and `truncation_mode`)."""
    record = ModelRecord.of(model, kind="policy")
    examples = trl_seams.tokenize_preferences(Dataset.from_list([dict(p) for p in pairs]), tokenizer)
    collator = DataCollatorForPreference(
        pad_token_id=tokenizer.pad_token_id,
        max_length=record.max_length,
        truncation_mode=record.truncation_mode or "keep_start",
    )
    return list(examples), collator


def fit_new_user(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    user: str,
    pairs: Sequence[dict],
    ref_model: PreTrainedModel | None = None,
    beta: float = 0.1,
    steps: int = 30,
    learning_rate: float = 0.05,
    soft_tokens: SoftTokens | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> int:
    """
    Cold start: fit a new user of a personalized policy from `k` preference pairs (`{prompt, chosen, rejected}`,
    standard or conversational) with the P-DPO loss, everything else frozen, the policy in eval mode (the fit is
    deterministic; [`~trl_custom.soft_tokens.fit_new_row`], the fitter `fit_new_condition` shares). The pairs are
    tokenized and batched by TRL's `DPOTrainer` path, so the log-probs are the trainer's. With zero pairs the user is
    not added and gets the generic user (id 0).

    The reference is the non-personalized base: `ref_model`, or, for a LoRA policy, the policy with its adapter off.

    Args:
        steps (`int`, *optional*, defaults to `30`): Adam steps on the user's row.
        batch_size (`int` or `None`, *optional*, defaults to `None`): Pairs per step. `None`: all `k` pairs in every
            step; a number bounds the memory (and time per step) for large `k`: passes over a seeded shuffle.
        seed (`int`, *optional*, defaults to `0`): Seed of that shuffle.

    Returns:
        The user's id (its soft-token row).
    """
    soft_tokens = _user_model(model, soft_tokens)
    spec = ModelRecord.of(model, kind="policy").conditioning
    if str(user) in spec.conditions:
        raise ValueError(f"The policy already knows user {user!r}: fit_new_user adds a new one. Choose another id.")
    if len(pairs) == 0:
        return 0
    if ref_model is None and not hasattr(model, "disable_adapter"):
        raise ValueError("Pass `ref_model` (the non-personalized base) to fit a user on a fully fine-tuned policy.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None: all pairs in each step), got {batch_size}.")
    device = model.get_input_embeddings().weight.device
    examples, collator = preference_batches(model, tokenizer, pairs)

    def batch_of(indices):
        return {k: v.to(device) for k, v in collator([examples[i] for i in indices]).items()}

    reference = {}  # pair index -> (chosen, rejected) reference log-probs, computed once

    def reference_of(indices, batch):
        missing = [i for i in indices if i not in reference]
        if missing:
            part = batch if len(missing) == len(indices) else batch_of(missing)
            with torch.no_grad(), model.disable_adapter() if ref_model is None else contextlib.nullcontext():
                chosen, rejected = sequence_log_probs(ref_model or model, part, None).chunk(2)
            reference.update({i: (c, r) for i, c, r in zip(missing, chosen, rejected, strict=True)})
        return torch.stack([reference[i][0] for i in indices]), torch.stack([reference[i][1] for i in indices])

    def loss(indices, tokens):
        batch = batch_of(indices)
        ref_chosen, ref_rejected = reference_of(indices, batch)
        logps = sequence_log_probs(model, batch, tokens.expand(batch["input_ids"].shape[0], -1, -1))
        chosen, rejected = logps.chunk(2)
        return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()

    was_training = model.training
    model.eval()  # the reference passes too: no dropout anywhere
    try:
        index = fit_new_row(
            model, soft_tokens, loss, len(examples), steps=steps, learning_rate=learning_rate,
            batch_size=batch_size, seed=seed, desc=f"Fitting user {user!r}",
        )  # fmt: skip
    finally:
        model.train(was_training)
    spec.conditions.append(str(user))
    return index
