# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Completions of a policy for many prompts: batched, seeded `generate` calls with a progress bar, plain or under each
condition's soft tokens (through [`generate_for_user`], the one soft-token generation)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..personalized_dpo.inference import generate_for_user


Prompt = str | list[dict[str, Any]]


def as_policy_prompt(prompt: Prompt, use_chat_template: bool) -> Prompt:
    """A prompt as the policy reads it: with `use_chat_template`, a text prompt becomes one user message."""
    if use_chat_template and isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return prompt


def check_can_generate(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], use_chat_template: bool) -> None:
    """
    Refuse, before any generation, conversational prompts (or `use_chat_template`) with a tokenizer that has no chat
    template, and a tokenizer with neither a pad nor an EOS token (batched generation pads on the left).
    """
    conversational = use_chat_template or any(isinstance(p, list) for p in prompts)
    if conversational and not getattr(tokenizer, "chat_template", None):
        first = next((i for i, p in enumerate(prompts) if isinstance(p, list)), None)
        what = f"prompt {first} is a list of messages" if first is not None else "use_chat_template is set"
        raise ValueError(
            f"The policy cannot generate: {what}, but its tokenizer ({type(tokenizer).__name__}, "
            f"{tokenizer.name_or_path or 'no name'}) has no chat template. Give text prompts (and "
            "use_chat_template=false), or set `tokenizer.chat_template` (e.g. save one beside the policy)."
        )
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError("The policy's tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token.")


@contextlib.contextmanager
def _left_padding(tokenizer):
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # only while generating: the tokenizer is left as it was
    try:
        yield
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad


def _decode(tokenizer, ids: torch.Tensor, conversational: bool) -> list[str]:
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [t.strip() for t in texts] if conversational else texts


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    num_return_sequences: int = 1,
    conditions: Sequence[Any] | None = None,
    use_chat_template: bool = False,
    batch_size: int = 16,
    seed: int | None = 0,
    progress: bool = False,
    desc: str = "Generating",
    **generate_kwargs: Any,
) -> list[list[str]]:
    """
    `num_return_sequences` completions of each prompt, in `batch_size` sequences per `generate` call (a prompt's
    completions stay in one call), each call seeded with `seed` + the index of its first prompt.

    Args:
        model, tokenizer: The policy and its tokenizer (its chat template for conversational prompts).
        prompts: Text prompts or lists of messages.
        conditions (*optional*): One condition (user, domain) per prompt: the completion is generated under its soft
            tokens (the policy's, trained by [`PersonalizedDPOTrainer`]). `None`: the plain policy.
        use_chat_template (`bool`): Text prompts go through the chat template as a user message.
        **generate_kwargs: For `model.generate` (`max_new_tokens`, `do_sample`, `temperature`, ...).

    Returns:
        `list[list[str]]`: The new text of each prompt's completions (conversational: stripped).
    """
    prompts = [as_policy_prompt(p, use_chat_template) for p in prompts]
    check_can_generate(tokenizer, prompts, use_chat_template=False)
    if conditions is not None and len(conditions) != len(prompts):
        raise ValueError(f"Got {len(conditions)} conditions for {len(prompts)} prompts: give one per prompt.")
    n = num_return_sequences
    per_call = max(1, batch_size // n)
    device = model.get_input_embeddings().weight.device
    outputs: list[list[str]] = []
    was_training = model.training
    model.eval()
    try:
        with _left_padding(tokenizer):
            generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
            for start in tqdm(range(0, len(prompts), per_call), desc=desc, disable=not progress):
                chunk = [p for p in prompts[start : start + per_call] for _ in range(n)]
                conversational = isinstance(chunk[0], list)
                if seed is not None:
                    torch.manual_seed(seed + start)
                if conditions is not None:
                    users = [c for c in conditions[start : start + per_call] for _ in range(n)]
                    texts = generate_for_user(model, tokenizer, chunk, users=users, **generate_kwargs)
                    texts = [t.strip() for t in texts] if conversational else texts
                else:
                    texts = _generate_plain(model, tokenizer, chunk, device, conversational, generate_kwargs)
                outputs += [texts[i : i + n] for i in range(0, len(texts), n)]
    finally:
        model.train(was_training)
    return outputs


def _generate_plain(model, tokenizer, prompts, device, conversational, generate_kwargs) -> list[str]:
    if conversational:
        texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    else:
        texts = list(prompts)
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not conversational)
    input_ids, attention_mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    return _decode(tokenizer, output[:, input_ids.shape[1] :], conversational)
