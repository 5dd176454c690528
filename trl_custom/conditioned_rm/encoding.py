# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Tokenization of (condition, prompt, response) shared by training and scoring.

With conditioning off, a sequence is tokenized exactly as TRL's `RewardTrainer` does it (prompt + response + EOS for
standard text, the chat template for conversational messages), so losses match TRL's. Unlike TRL, tokenizers without
an EOS token (BERT/MiniLM: they end every sequence with `[SEP]` themselves) are supported.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase
from trl.data_utils import _tokenize

from .conditioning import ConditioningSpec, is_missing_condition


Messages = list[dict[str, Any]]


def _with_system_message(messages: Messages, text: str) -> Messages:
    if messages and messages[0].get("role") == "system":
        return [{"role": "system", "content": f"{text}\n{messages[0]['content']}"}] + list(messages[1:])
    return [{"role": "system", "content": text}] + list(messages)


def apply_text_condition(
    spec: ConditioningSpec,
    condition: Any,
    prompt: str | Messages | None,
    responses: list[str | Messages],
) -> tuple[str | Messages | None, list[str | Messages]]:
    """
    Render `condition` into the input (text mode): prefix of the prompt (standard format) or system message
    (conversational format); with an implicit prompt, into each response. Absent conditions render nothing.
    """
    if spec.mode != "text" or is_missing_condition(condition):
        return prompt, responses
    prefix = spec.render(condition)

    def render(part):
        return _with_system_message(part, prefix.strip()) if isinstance(part, list) else prefix + part

    if prompt is not None:
        return render(prompt), responses
    return None, [render(response) for response in responses]


def encode_sequence(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Messages | None,
    response: str | Messages,
    **chat_template_kwargs,
) -> list[int]:
    """Token ids of prompt + response, as TRL's `RewardTrainer` builds them."""
    if isinstance(response, list):
        return _tokenize(tokenizer, (prompt or []) + response, **chat_template_kwargs)["input_ids"]
    eos = tokenizer.eos_token
    if eos is not None and not response.endswith(eos):
        response = response + eos
    return _tokenize(tokenizer, (prompt or "") + response)["input_ids"]


def render_reward_text(
    tokenizer: PreTrainedTokenizerBase,
    spec: ConditioningSpec,
    prompt: str | Messages | None,
    response: str | Messages,
    condition: Any = None,
) -> str:
    """
    The text a text-mode (or unconditioned) reward model scores for `(prompt, response, condition)`: the condition
    template + prompt + response + EOS, or the chat template of the conversation with the condition as system
    message. Feed it to tools that take raw text, such as `pipeline("text-classification", function_to_apply="none")`.

    For standard text the pipeline's tokenization is the trainer's; for conversations it is the same unless the
    tokenizer adds special tokens (e.g. a BOS) on top of the chat template.
    """
    if spec.mode == "embedding":
        raise ValueError(
            "An embedding-mode reward model reads its condition from soft tokens, not from the text: score it with "
            "RewardScorer or ConditionedRewardFunction instead of a text pipeline."
        )
    prompt, (response,) = apply_text_condition(spec, condition, prompt, [response])
    if isinstance(response, list):
        return tokenizer.apply_chat_template((prompt or []) + response, tokenize=False)
    eos = tokenizer.eos_token
    if eos is not None and not response.endswith(eos):
        response = response + eos
    return (prompt or "") + response


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | Messages, **chat_template_kwargs) -> list[int]:
    """Token ids of the prompt alone (with the generation prompt for conversations), to locate the completion."""
    if isinstance(prompt, list):
        return _tokenize(tokenizer, prompt, add_generation_prompt=True, **chat_template_kwargs)["input_ids"]
    return _tokenize(tokenizer, prompt)["input_ids"]


def truncate_ids(ids: list[int], max_length: int) -> list[int]:
    """
    Cut the middle of a too-long sequence: keep its first `max_length // 4` tokens (special tokens, condition
    template, start of the question) and its last `max_length - max_length // 4` (the end of the response, where
    the two responses of a pair differ and where a decoder reads the reward).
    """
    if len(ids) <= max_length:
        return ids
    head = max(1, max_length // 4)
    return ids[:head] + ids[len(ids) - (max_length - head) :]
