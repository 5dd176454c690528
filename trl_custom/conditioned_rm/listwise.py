# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Listwise reward-model objective: one chosen response against several rejected ones (Plackett–Luce top-1).

A DSP query has five responses; for each domain the domain's response is preferred to the four others. Pairwise
training makes four separate terms of it. The Plackett–Luce top-1 term makes one softmax over the five:

    loss = -log( exp(r_chosen) / (exp(r_chosen) + sum_j exp(r_rejected_j + m_j)) )
         = softplus( logsumexp_j (r_rejected_j + m_j - r_chosen) )

With one rejected response this is the pairwise loss `-logsigmoid(r_chosen - r_rejected - m)` exactly. A dataset
switches it on by holding a *list* of rejected responses per row (`rejected: list[str]`, or `rejected_ids:
list[list[int]]` when pre-tokenized); `margin` may then be a number (the same for every rejected response) or a list
of the same length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from datasets import IterableDataset

from ..data.checks import is_listwise_example
from ..data.preferences import is_empty_response


def plackett_luce_top1_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    group: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Per-row Plackett–Luce top-1 loss (see the module docstring).

    Args:
        chosen_rewards (`torch.Tensor`): `(rows,)` reward of each row's chosen response.
        rejected_rewards (`torch.Tensor`): `(rejected,)` rewards of all rejected responses, row after row.
        group (`torch.LongTensor`): `(rejected,)` the row each rejected response belongs to.
        margin (`torch.Tensor`, *optional*): `(rejected,)` margin of each rejected response.

    Returns:
        `(rows,)` loss of each row.
    """
    rows = chosen_rewards.shape[0]
    if group.shape[0] == rows and bool((group == torch.arange(rows, device=group.device)).all()):
        # one rejected response per row: the pairwise loss, computed as the pairwise path does it (bit-identical)
        logits = chosen_rewards - rejected_rewards - (margin if margin is not None else 0.0)
        return -F.logsigmoid(logits)
    logits = rejected_rewards - chosen_rewards[group]
    if margin is not None:
        logits = logits + margin
    # logsumexp per row, stable: subtract each row's max before exponentiating
    row_max = logits.new_full((rows,), float("-inf")).scatter_reduce(0, group, logits.detach(), reduce="amax")
    sums = logits.new_zeros(rows).index_add(0, group, torch.exp(logits - row_max[group]))
    return F.softplus(row_max + torch.log(sums))


LISTWISE_ROW = "listwise_row"  # the exploded pairs' original row, while TRL tokenizes them


def check_listwise_rows(dataset, dataset_name: str, column: str = "rejected") -> None:
    """Refuse, naming the row, an empty list of rejected responses, an empty one in it, or margins that do not fit."""
    margins = dataset["margin"] if "margin" in dataset.column_names else None
    for index, rejected in enumerate(dataset[column]):
        where = f"Row {index} of the {dataset_name} dataset"
        if not isinstance(rejected, list) or not rejected:
            raise ValueError(
                f"{where} has rejected={rejected!r}, but this dataset is listwise (its first row holds a list of "
                "rejected responses): every row needs a non-empty list. Wrap single responses in a list."
            )
        for j, response in enumerate(rejected):
            if is_empty_response(response) or (column == "rejected_ids" and not response):
                raise ValueError(
                    f"{where} has an empty rejected response at position {j}. Remove it from the list or fill it in: "
                    "an empty response cannot be ranked."
                )
        if margins is not None and isinstance(margins[index], list) and len(margins[index]) != len(rejected):
            raise ValueError(
                f"{where} has {len(margins[index])} margins for {len(rejected)} rejected responses: give one margin "
                "per rejected response, or a single number for all of them."
            )


def explode_listwise(batch: dict[str, list], indices: list[int], column: str = "rejected") -> dict[str, list]:
    """Batched `Dataset.map` function: one pairwise row per rejected response (`column`: `"rejected"`, or
    `"rejected_ids"` when pre-tokenized), tagged with its row ([`LISTWISE_ROW`]), so that TRL's `_prepare_dataset`
    tokenizes every response as it tokenizes pairs."""
    output = {key: [] for key in batch}
    output[LISTWISE_ROW] = []
    for i, index in enumerate(indices):
        for j, rejected in enumerate(batch[column][i]):
            for key in batch:
                output[key].append(batch[key][i])
            output[column][-1] = rejected
            if "margin" in batch and isinstance(batch["margin"][i], list):
                output["margin"][-1] = batch["margin"][i][j]
            output[LISTWISE_ROW].append(index)
    return output


def regroup_listwise(dataset):
    """The tokenized pairs of [`explode_listwise`] back to one row per original row: `rejected_ids` (and `margin`)
    as lists, the other columns from the row's first pair."""
    rows = dataset[LISTWISE_ROW]
    starts = [i for i in range(len(rows)) if i == 0 or rows[i] != rows[i - 1]]
    bounds = list(zip(starts, starts[1:] + [len(rows)], strict=True))
    grouped = {"rejected_ids": dataset["rejected_ids"]}
    if "margin" in dataset.column_names:
        grouped["margin"] = dataset["margin"]
    drop = [c for c in [*grouped, "rejected", LISTWISE_ROW] if c in dataset.column_names]
    regrouped = dataset.select(starts).remove_columns(drop)
    for column, values in grouped.items():
        regrouped = regrouped.add_column(column, [values[a:b] for a, b in bounds])
    return regrouped


def is_listwise_dataset(dataset, column_names: list[str], padding_free: bool, dataset_name: str) -> bool:
    """Whether a dataset's rows hold lists of rejected responses; refuses the forms that cannot be listwise."""
    if "condition_ids" in column_names or not ({"rejected", "rejected_ids"} & set(column_names)):
        return False  # prepared by this trainer already, or refused by `_check_columns`
    first = next(iter(dataset), None)
    if first is None or not is_listwise_example(first):
        return False
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            f"The {dataset_name} dataset is streamed (IterableDataset) and listwise (a list of rejected "
            "responses per row), which this trainer prepares as a map-style dataset only: load it with "
            "`streaming=False`, or give one rejected response per row."
        )
    if padding_free:
        raise ValueError(
            f"The {dataset_name} dataset is listwise (a list of rejected responses per row), which padding_free "
            "batches do not support yet: set padding_free=False, or give one rejected response per row."
        )
    return True
