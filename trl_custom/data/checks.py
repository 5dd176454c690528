# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Row checks shared by the trainers, the recipes and the evaluation: a bad row is refused before tokenization, naming
the dataset, the row, the column, the value and the fix (instead of an `AttributeError` deep inside TRL).

- [`check_text_row`] / [`check_text_columns`]: `prompt` (optional), `chosen` and `rejected` hold text (`str`) or
  messages (a list of `{"role": ..., "content": ...}` dicts), in one format per row; in a listwise dataset (the reward
  trainer, see [`is_listwise_example`]) `rejected` holds a list of such responses. The trainers call
  [`check_text_columns`] on every dataset they prepare (`train`, `eval`, each key of an eval dict).
- [`check_rows`]: what the recipes check on the source they load (every row of the splits the run uses, before the
  held-out split and the shuffle, so that the rows named are the rows of the user's file and a bad held-out row fails
  before training): the text types, empty responses, finite margins and user features.

Rows count from 0, as `dataset[i]`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, Value

from .preferences import is_empty_response


TEXT_COLUMNS = ("prompt", "chosen", "rejected")
FORMATS = "text (str) or a list of messages ({'role': ..., 'content': ...} dicts)"
CHECK_BATCH_SIZE = 10_000


# ---------------------------------------------------------------------------------------------------- one value
def is_finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def is_listwise_example(example: dict) -> bool:
    """Whether a dataset row holds several rejected responses (a list of texts/conversations, or of token lists)."""
    if "rejected_ids" in example:
        ids = example["rejected_ids"]
        return bool(ids) and isinstance(ids[0], list)
    rejected = example.get("rejected")
    return isinstance(rejected, list) and bool(rejected) and not isinstance(rejected[0], dict)


def response_format(value: Any) -> str | None:
    """`"text"` (a `str`), `"messages"` (a list of dicts with a `role` and `content` or `tool_calls`), else `None`."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and all(
        isinstance(m, dict) and "role" in m and ("content" in m or "tool_calls" in m) for m in value
    ):
        return "messages"
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _type_name(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, list) and value:
        return "list of " + ", ".join(sorted({type(v).__name__ for v in value}))
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------- errors
def empty_response_error(index: int, column: str, name: str) -> ValueError:
    """`name`: the dataset as the message names it (`"the train dataset"`, "the `test` split of data/prefs.jsonl")."""
    return ValueError(
        f"Row {index} of {name} has an empty '{column}' response. Remove the row or fill in the response: an empty "
        "response cannot be ranked."
    )


def margin_error(index: int, value: Any, name: str) -> ValueError:
    return ValueError(
        f"Row {index} of {name} has margin={value!r}. Margins must be finite numbers: fix or drop the row (use 0.0 "
        "for 'no margin'), or cast the column to float (`dataset.cast_column('margin', Value('float32'))`)."
    )


def feature_error(index: int, column: str, value: Any, name: str) -> ValueError:
    return ValueError(
        f"Row {index} of {name} has {column}={value!r}, but user features (`condition_feature_columns`) must be "
        "finite numbers. Fix or drop the row, or cast the column to float (`dataset.cast_column(...)`)."
    )


def _text_type_error(index: int, column: str, value: Any, name: str, position: int | None = None) -> ValueError:
    what = column if position is None else f"{column}[{position}]"
    if value is None:
        fix = "Fill it in" + (" ('' for a row without a prompt)" if column == "prompt" else "") + ", or drop the row."
    elif isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        bad = next(i for i, m in enumerate(value) if response_format([m]) is None)
        fix = f"Message {bad} ({_short(value[bad])}) has no 'role' or no 'content': fix the row, or drop it."
    else:
        quoted = " (a number in a JSON file must be quoted to be text)" if isinstance(value, numbers.Number) else ""
        fix = f"Fix the row{quoted}, or drop it."
    if (
        column == "rejected"
        and position is None
        and isinstance(value, list)
        and all(response_format(v) for v in value)
    ):
        fix += (
            " A list of rejected responses is a listwise row, which only the reward trainer (CustomRewardTrainer) "
            "takes, when every row has one (the first row decides)."
        )
    return ValueError(
        f"Row {index} of {name} has {what}={_short(value)} ({_type_name(value)}): {what} must be {FORMATS}. {fix}"
    )


# ---------------------------------------------------------------------------------------------------- rows
def check_text_row(example: dict[str, Any], index: int, name: str, listwise: bool = False) -> None:
    """
    Refuse, naming the row and the column, a `prompt`/`chosen`/`rejected` that is neither text nor messages, or a row
    mixing the two formats. Columns the row does not have are not checked (implicit prompt, pre-tokenized rows).

    Args:
        example (`dict`): The row.
        index (`int`): Its row number, for the message.
        name (`str`): The dataset as the message names it, e.g. `"the train dataset"`.
        listwise (`bool`, *optional*): The dataset is listwise: `rejected` is a list of responses.
    """
    formats = {}
    for column in TEXT_COLUMNS:
        if column not in example:
            continue
        value = example[column]
        if column == "rejected" and listwise:
            if not isinstance(value, list):
                raise ValueError(
                    f"Row {index} of {name} has rejected={_short(value)} ({_type_name(value)}), but this dataset is "
                    "listwise (its first row holds a list of rejected responses): every row needs a list. Wrap "
                    "single responses in a list."
                )
            for position, response in enumerate(value):
                if response_format(response) is None:
                    raise _text_type_error(index, column, response, name, position)
                formats[f"rejected[{position}]"] = response_format(response)
            continue
        if response_format(value) is None:
            raise _text_type_error(index, column, value, name)
        formats[column] = response_format(value)
    if len(set(formats.values())) > 1:
        described = ", ".join(f"{column} is {kind}" for column, kind in formats.items())
        raise ValueError(
            f"Row {index} of {name} mixes text and messages ({described}). Give prompt, chosen and rejected in one "
            "format: all text (str), or all lists of messages ({'role': ..., 'content': ...} dicts)."
        )


def _rows(dataset: Dataset, columns: list[str]) -> Iterable[tuple[int, dict[str, Any]]]:
    """`(index, row)` of `columns`, read in batches."""
    index = 0
    for batch in dataset.select_columns(columns).iter(batch_size=CHECK_BATCH_SIZE):
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield index, dict(zip(columns, values, strict=True))
            index += 1


def _all_text(dataset: Dataset, columns: list[str]) -> bool:
    """Whether `columns` are string columns without a missing value (so every row holds text: nothing to check)."""
    table = dataset.data
    return all(dataset.features[c] == Value("string") and table.column(c).null_count == 0 for c in columns)


def check_text_columns(dataset, dataset_name: str, listwise: bool = False):
    """
    [`check_text_row`] on every row of a trainer's dataset (`dataset_name`: `"train"`, `"eval"`, an eval dict key):
    a [`~datasets.Dataset`] is checked now; an [`~datasets.IterableDataset`] is returned mapped, each row checked as
    it is read. Returns the dataset.
    """
    name = f"the {dataset_name} dataset"
    if isinstance(dataset, IterableDataset):

        def check(example, index):
            check_text_row(example, index, name, listwise)
            return example

        return dataset.map(check, with_indices=True)
    columns = [c for c in TEXT_COLUMNS if c in dataset.column_names]
    if columns and not _all_text(dataset, columns):
        for index, row in _rows(dataset, columns):
            check_text_row(row, index, name, listwise)
    return dataset


def check_rows(
    dataset: Dataset | DatasetDict,
    name: str,
    listwise: bool = False,
    margins: bool = True,
    feature_columns: Iterable[str] = (),
) -> None:
    """
    The recipes' check of a loaded source, every row of every split: [`check_text_row`], empty responses, finite
    `margin`s (with `margins`) and user features (`feature_columns`). Columns a split lacks are not checked (the
    trainer names missing required columns).

    Args:
        dataset ([`~datasets.Dataset`] or [`~datasets.DatasetDict`]): The source, before any split or shuffle.
        name (`str`): The source as the messages name it: a path, ``"the `datasets:` mixture"``; a split is named
            ``"the `test` split of <name>"``.
        listwise (`bool`, *optional*): Whether a list of rejected responses makes a listwise row (the reward
            recipe): a split is listwise when its first row is, as in the reward trainer.
        margins (`bool`, *optional*): Check the `margin` column (a number, or a list of numbers in a listwise row).
        feature_columns (`list[str]`, *optional*): Columns that must hold finite numbers (P-DPO's user features).
    """
    if isinstance(dataset, DatasetDict):
        for split, part in dataset.items():
            check_rows(part, f"the `{split}` split of {name}", listwise, margins, feature_columns)
        return
    listwise = listwise and len(dataset) > 0 and is_listwise_example(dataset[0])
    features = [c for c in feature_columns if c in dataset.column_names]
    numbers_ = features + (["margin"] if margins and "margin" in dataset.column_names else [])
    columns = [c for c in TEXT_COLUMNS if c in dataset.column_names] + numbers_
    if not columns:
        return
    responses = [c for c in ("chosen", "rejected") if c in columns]
    for index, row in _rows(dataset, columns):
        check_text_row(row, index, name, listwise)
        for column in responses:
            values = row[column] if column == "rejected" and listwise else [row[column]]
            if not values or any(is_empty_response(value) for value in values):
                raise empty_response_error(index, column, name)
        for column in features:
            if not is_finite_number(row[column]):
                raise feature_error(index, column, row[column], name)
        if "margin" in numbers_:
            margin = row["margin"]
            if not all(is_finite_number(m) for m in (margin if listwise and isinstance(margin, list) else [margin])):
                raise margin_error(index, margin, name)
