# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
What [`CustomRewardTrainer`] adds around TRL's `RewardTrainer._prepare_dataset`: row checks that name the row and the
fix, condition ids, and `truncation_mode` for pairs longer than `max_length`.
"""

from __future__ import annotations

import logging
from typing import Any

from accelerate import PartialState
from datasets import Dataset, IterableDataset

from ..data import checks
from ..data.checks import is_finite_number
from ..data.preferences import is_empty_response
from ..soft_tokens import ConditioningSpec, is_missing
from .encoding import truncate_sequence


logger = logging.getLogger(__name__)


def empty_response_error(index: int, column: str, dataset_name: str) -> ValueError:
    return checks.empty_response_error(index, column, f"the {dataset_name} dataset")


def margin_error(index: int, value: Any, dataset_name: str) -> ValueError:
    return checks.margin_error(index, value, f"the {dataset_name} dataset")


def check_row(example: dict[str, Any], index: int, dataset_name: str) -> dict[str, Any]:
    """`IterableDataset.map` function: the checks of [`validate_rows`] on one streamed row, as it is read."""
    for column in ("chosen", "rejected"):
        if is_empty_response(example[column]):
            raise empty_response_error(index, column, dataset_name)
    if "margin" in example and not is_finite_number(example["margin"]):
        raise margin_error(index, example["margin"], dataset_name)
    return example


def condition_id(
    example: dict[str, Any],
    index: int,
    spec: ConditioningSpec,
    dataset_name: str,
    unseen: dict[str, int] | None = None,
) -> dict[str, int]:
    """`Dataset.map` function: the row's condition id (0, the generic entry, for absent values and non-strict unknown
    ones, unless `unseen` gives an unknown value an id of its own, for the metrics)."""
    value = example.get(spec.column)
    found = spec.condition_id(value, f" in row {index} of the {dataset_name} dataset")
    return {"condition_ids": (unseen or {}).get(str(value), found) if found == 0 and not is_missing(value) else found}


def validate_rows(dataset: Dataset, column_names: list[str], dataset_name: str, spec: ConditioningSpec) -> None:
    """Fail early, naming the row, on empty responses, non-finite margins and (strict) unknown conditions."""
    for column in ("chosen", "rejected"):
        if column not in column_names:
            continue
        for index, value in enumerate(dataset[column]):
            if is_empty_response(value):
                raise empty_response_error(index, column, dataset_name)
    if "margin" in column_names:
        for index, value in enumerate(dataset["margin"]):
            if not is_finite_number(value):
                raise margin_error(index, value, dataset_name)
    if spec.mode != "none" and spec.strict and spec.column in column_names:
        for index, value in enumerate(dataset[spec.column]):
            spec.condition_id(value, where=f" in row {index} of the {dataset_name} dataset")


def cut_prompts(example: dict[str, Any], max_prompt_length: int) -> dict[str, Any]:
    """`Dataset.map` function: the prompt of both sequences cut to its first `max_prompt_length` tokens."""
    start = example["completion_start"]
    chosen, new_start = truncate_sequence(example["chosen_ids"], None, start, max_prompt_length=max_prompt_length)
    rejected, _ = truncate_sequence(example["rejected_ids"], None, start, max_prompt_length=max_prompt_length)
    return {"chosen_ids": chosen, "rejected_ids": rejected, "completion_start": new_start}


def enforce_max_length(
    dataset,
    max_length: int | None,
    truncation_mode: str,
    dataset_name: str,
    max_prompt_length: int | None = None,
):
    """
    `max_prompt_length` (every row's prompt cut to its budget, see
    [`~trl_custom.conditioned_rm.encoding.truncate_sequence`]), then `truncation_mode` on a tokenized dataset: pairs
    with a sequence longer than `max_length` are cut (`"head_tail"`, `"keep_start"`), dropped or refused, and their
    count is logged (a streaming dataset's count is unknown up front).
    """
    policy = truncation_mode if truncation_mode in ("drop", "error") else "truncate"
    if max_prompt_length is not None:
        kwargs = {"desc": f"Cutting the prompts of the {dataset_name} dataset"} if isinstance(dataset, Dataset) else {}
        dataset = dataset.map(cut_prompts, fn_kwargs={"max_prompt_length": max_prompt_length}, **kwargs)
    if max_length is None:
        return dataset

    def too_long(example):
        return len(example["chosen_ids"]) > max_length or len(example["rejected_ids"]) > max_length

    def truncate(example):
        start = example.get("completion_start")
        chosen, new_start = truncate_sequence(example["chosen_ids"], max_length, start, truncation_mode)
        rejected, _ = truncate_sequence(example["rejected_ids"], max_length, start, truncation_mode)
        output = {"chosen_ids": chosen, "rejected_ids": rejected}
        if start is not None:
            output["completion_start"] = new_start
        return output

    if isinstance(dataset, IterableDataset):  # lazy: counts are unknown up front
        if policy == "error":

            def refuse(example):
                if too_long(example):
                    raise ValueError(
                        f"A pair of the {dataset_name} dataset is longer than max_length={max_length} tokens. "
                        "Raise max_length, or set truncation_mode='head_tail', 'keep_start' or 'drop'."
                    )
                return example

            return dataset.map(refuse)
        if PartialState().is_main_process:
            logger.warning(
                f"Pairs of the streaming {dataset_name} dataset longer than max_length={max_length} will be "
                f"{'truncated' if policy == 'truncate' else 'dropped'} (count unknown for an IterableDataset)."
            )
        return dataset.map(truncate) if policy == "truncate" else dataset.filter(lambda ex: not too_long(ex))

    lengths = zip(dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
    long_rows = [i for i, (c, r) in enumerate(lengths) if len(c) > max_length or len(r) > max_length]
    if not long_rows:
        return dataset
    count = f"{len(long_rows)} of {len(dataset)} pairs of the {dataset_name} dataset"
    if policy == "error":
        raise ValueError(
            f"{count} are longer than max_length={max_length} tokens (rows {long_rows[:10]}"
            f"{'...' if len(long_rows) > 10 else ''}). Raise max_length, or set truncation_mode='head_tail', "
            "'keep_start' or 'drop'."
        )
    if policy == "drop":
        long_set = set(long_rows)
        dataset = dataset.select([i for i in range(len(dataset)) if i not in long_set])
        message = f"Dropped {count}: longer than max_length={max_length} tokens (rows {long_rows[:10]})."
    else:
        dataset = dataset.map(truncate, desc=f"Truncating {dataset_name} pairs to {max_length} tokens")
        head = max(1, max_length // 4)
        kept = (
            f"kept the first {max_length - 1} tokens and the last one"
            if truncation_mode == "keep_start"
            else f"kept the first {head} and the last {max_length - head} tokens"
        )
        message = f"Truncated {count} to max_length={max_length} tokens ({kept} of each sequence)."
        cut = dataset.select(long_rows)
        tied = [i for i, c, r in zip(long_rows, cut["chosen_ids"], cut["rejected_ids"], strict=True) if c == r]
        if tied:
            other_mode = " or use truncation_mode='head_tail' (keeps the end of the response)"
            message += (
                f" {len(tied)} of them are now the same sequence for chosen and rejected (rows {tied[:10]}): the "
                "cut left no response token, so they teach nothing (loss log 2). Set max_prompt_length (a budget for "
                f"the prompt), raise max_length{other_mode if truncation_mode == 'keep_start' else ''}."
            )
    if PartialState().is_main_process:
        logger.warning(message)
    return dataset
