# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Tokenization of (condition, prompt, response) shared by training and scoring.

Training tokenizes with TRL's own `RewardTrainer._prepare_dataset` (prompt + response + EOS for standard text, the
chat template for conversational messages); [`encode_sequence`] builds the same ids for scoring. Unlike TRL,
tokenizers without an EOS token (BERT/MiniLM: they end every sequence with `[SEP]` themselves) are supported, see
[`without_missing_eos`]. In text mode the condition is rendered into the text columns before TRL tokenizes them
([`render_condition_columns`]).
"""

from __future__ import annotations

import json
from typing import Any

from transformers import PreTrainedTokenizerBase
from trl.data_utils import common_prefix_length

from .. import trl_seams
from ..soft_tokens.spec import ConditioningSpec, is_missing


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
    if not spec.renders_text or is_missing(condition):
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
        return trl_seams.tokenize(tokenizer, (prompt or []) + response, **chat_template_kwargs)["input_ids"]
    eos = tokenizer.eos_token
    if eos is not None and not response.endswith(eos):
        response = response + eos
    return trl_seams.tokenize(tokenizer, (prompt or "") + response)["input_ids"]


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
    if spec.uses_soft_tokens:
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
        return trl_seams.tokenize(tokenizer, prompt, add_generation_prompt=True, **chat_template_kwargs)["input_ids"]
    return trl_seams.tokenize(tokenizer, prompt)["input_ids"]


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


# What happens to a pair longer than `max_length` (`CustomRewardConfig.truncation_mode`): the first two cut it.
TRUNCATION_MODES = ("head_tail", "keep_start", "drop", "error")


def truncate_sequence(
    ids: list[int],
    max_length: int | None,
    prompt_length: int | None = None,
    truncation_mode: str = "head_tail",
    max_prompt_length: int | None = None,
) -> tuple[list[int], int | None]:
    """
    A tokenized (prompt + response) sequence as the reward model sees it, and where its completion now starts.

    - `max_prompt_length`: the prompt (its first `prompt_length` tokens: special tokens, condition template, question)
      keeps only its first `max_prompt_length` tokens, whatever the sequence's length (a per-part token budget);
    - then, longer than `max_length`: `"head_tail"` cuts the middle ([`truncate_ids`]); `"keep_start"` keeps the first
      `max_length - 1` tokens (the start of the prompt and of the response) and the last token (EOS/`[SEP]`, where a
      decoder reads the reward).
    """
    if max_prompt_length is not None and prompt_length is not None and prompt_length > max_prompt_length:
        ids = ids[:max_prompt_length] + ids[prompt_length:]
        prompt_length = max_prompt_length
    if max_length is None or len(ids) <= max_length:
        return ids, prompt_length
    if truncation_mode == "keep_start":
        ids = ids[: max_length - 1] + ids[-1:]
    else:
        ids = truncate_ids(ids, max_length)
    if prompt_length is not None:
        prompt_length = min(prompt_length, len(ids))
    return ids, prompt_length


def render_condition_columns(example: dict[str, Any], spec: ConditioningSpec) -> dict[str, Any]:
    """`Dataset.map` function: the `prompt`/`chosen`/`rejected` columns with the row's condition rendered in."""
    prompt, (chosen, rejected) = apply_text_condition(
        spec, example.get(spec.column), example.get("prompt"), [example["chosen"], example["rejected"]]
    )
    return {"chosen": chosen, "rejected": rejected, **({"prompt": prompt} if "prompt" in example else {})}


def completion_start(example: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """
    `Dataset.map` function on a tokenized row: index of the first token of the chosen completion in `chosen_ids`
    (after the prompt, or after the prefix the chosen and rejected sequences share when the prompt is implicit).
    """
    prompt = example.get("prompt")
    if prompt is None:
        return {"completion_start": common_prefix_length(example["chosen_ids"], example["rejected_ids"])}
    chat_template_kwargs = {}
    if isinstance(prompt, list):  # as TRL's `_prepare_dataset`: tools may be a JSON string, per-row template kwargs
        tools = example.get("tools")
        tools = json.loads(tools) if isinstance(tools, str) else tools
        chat_template_kwargs = {"tools": tools, **(example.get("chat_template_kwargs") or {})}
    prompt_ids = encode_prompt(tokenizer, prompt, **chat_template_kwargs)
    return {"completion_start": common_prefix_length(prompt_ids, example["chosen_ids"])}


class _EmptyEOSTokenizer:
    """`tokenizer` with `eos_token == ""`; every other attribute and call goes to `tokenizer`."""

    eos_token = ""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str):  # only reached for attributes not found on the view itself
        if name == "tokenizer":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


def without_missing_eos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """
    The processing class to hand TRL's `RewardTrainer._prepare_dataset`: `tokenizer` itself, or, when it has no EOS
    token, a view of it whose `eos_token` is `""`.

    TRL appends `processing_class.eos_token` to standard-text responses that do not end with it
    (`text.endswith(eos_token)`), which raises a `TypeError` for tokenizers without an EOS token (BERT, MiniLM: they
    close each sequence with `[SEP]` themselves). Every string ends with `""`, so with the view TRL's EOS step adds
    nothing and the rest of TRL's preprocessing (tokenization, chat templates, tools) runs unchanged, on the real
    tokenizer.
    """
    if isinstance(tokenizer, PreTrainedTokenizerBase) and tokenizer.eos_token is None:
        return _EmptyEOSTokenizer(tokenizer)
    return tokenizer
