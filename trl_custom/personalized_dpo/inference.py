# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Using a personalized policy: load it, generate for a user, fit a new user from a few preference pairs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.dpo_trainer import DataCollatorForPreference

from ..models import load_model_or_adapter
from .user_model import UserModel, attach_user_model, get_user_model, prepend_user_tokens


def load_personalized_model(
    path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, UserModel]:
    """
    Load a policy saved by [`PersonalizedDPOTrainer`] in one call: the causal LM (or its base + LoRA adapter), its
    tokenizer and its [`UserModel`] (attached to the model).

    Returns:
        `(model, tokenizer, user_model)`.
    """
    path = str(path)
    model = load_model_or_adapter(AutoModelForCausalLM, path, **model_kwargs)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
    user_model = attach_user_model(model, UserModel.from_pretrained(path))
    model.eval()
    return model, tokenizer, user_model


def _user_model(model, user_model):
    user_model = user_model or get_user_model(model)
    if user_model is None:
        raise ValueError("This model has no user model: load it with `load_personalized_model`.")
    return user_model


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
    user_model: UserModel | None = None,
    **generate_kwargs: Any,
) -> list[str]:
    """
    Generate completions of `prompts` for `users` (one id for all prompts, or one per prompt; `None` or unknown ids =
    the generic user), with each user's soft tokens prepended. Returns the decoded new text.
    """
    user_model = _user_model(model, user_model)
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
    user_ids = torch.tensor([user_model.user_index(u) for u in users], device=device)
    inputs = prepend_user_tokens(
        model, user_model(user_ids), encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    )
    generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    output = model.generate(**inputs, **generate_kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def sequence_log_probs(model, batch: dict[str, torch.Tensor], soft_tokens: torch.Tensor | None) -> torch.Tensor:
    """Summed completion log-probs of each row of a DPO batch (plain logits; `soft_tokens` prepended if given)."""
    input_ids, attention_mask, completion_mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    if soft_tokens is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    else:
        inputs = prepend_user_tokens(model, soft_tokens, input_ids, attention_mask)
        logits = model(**inputs, use_cache=False).logits[:, soft_tokens.shape[1] :]
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = log_probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * completion_mask[:, 1:]).sum(dim=1)


def tokenize_pairs(tokenizer: PreTrainedTokenizerBase, pairs: Sequence[dict]) -> list[dict]:
    """Standard-format `{prompt, chosen, rejected}` pairs -> DPO collator examples, built as TRL's DPOTrainer does."""
    examples = []
    for pair in pairs:
        prompt_ids = tokenizer(pair["prompt"])["input_ids"]
        eos = tokenizer.eos_token or ""
        chosen = tokenizer(pair["prompt"] + pair["chosen"] + eos)["input_ids"][len(prompt_ids) :]
        rejected = tokenizer(pair["prompt"] + pair["rejected"] + eos)["input_ids"][len(prompt_ids) :]
        examples.append({"prompt_ids": prompt_ids, "chosen_ids": chosen, "rejected_ids": rejected})
    return examples


def fit_new_user(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    user: str,
    pairs: Sequence[dict],
    ref_model: PreTrainedModel | None = None,
    beta: float = 0.1,
    steps: int = 30,
    learning_rate: float = 0.05,
    user_model: UserModel | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> int:
    """
    Cold start: fit a new user's individual vector from `k` preference pairs (`{prompt, chosen, rejected}`) with the
    P-DPO loss, everything else frozen. With zero pairs the user is not added and gets the generic user (index 0).

    The reference is the non-personalized base: `ref_model`, or, for a LoRA policy, the policy with its adapter off.

    Args:
        steps (`int`, *optional*, defaults to `30`): Adam steps on the user's vector.
        batch_size (`int` or `None`, *optional*, defaults to `None`): Pairs per step. `None`: all `k` pairs in every
            step; a number bounds the memory (and time per step) for large `k`: each step takes the next
            `batch_size` pairs of a seeded shuffle, reshuffled after each pass over the pairs.
        seed (`int`, *optional*, defaults to `0`): Seed of that shuffle (the fit is deterministic).

    Returns:
        The user's index in the user table.
    """
    user_model = _user_model(model, user_model)
    if len(pairs) == 0:
        return 0
    if ref_model is None and not hasattr(model, "disable_adapter"):
        raise ValueError("Pass `ref_model` (the non-personalized base) to fit a user on a fully fine-tuned policy.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None: all pairs in each step), got {batch_size}.")
    device = model.get_input_embeddings().weight.device
    collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    examples = tokenize_pairs(tokenizer, pairs)
    size = len(examples) if batch_size is None else min(batch_size, len(examples))

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

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []

    index = user_model.add_user(user)
    table = user_model.user_table
    vector = torch.nn.Parameter(table.weight[index].detach().clone().float())
    optimizer = torch.optim.Adam([vector], lr=learning_rate)
    frozen = [p for p in list(model.parameters()) + list(user_model.parameters()) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            if size == len(examples):
                indices = list(range(len(examples)))
            else:
                if len(order) < size:
                    order += torch.randperm(len(examples), generator=generator).tolist()
                indices, order = order[:size], order[size:]
            batch = batch_of(indices)
            ref_chosen, ref_rejected = reference_of(indices, batch)
            with torch.no_grad():
                table.weight[index] = vector.detach().to(table.weight.dtype)
            soft = user_model.soft_tokens(user_model.row_vectors(vector.to(table.weight.dtype).unsqueeze(0)))
            logps = sequence_log_probs(model, batch, soft.expand(batch["input_ids"].shape[0], -1, -1))
            chosen, rejected = logps.chunk(2)
            loss = -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    with torch.no_grad():
        table.weight[index] = vector.detach().to(table.weight.dtype)
    return index
