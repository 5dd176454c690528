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


def is_listwise_example(example: dict) -> bool:
    """Whether a dataset row holds several rejected responses (a list of texts/conversations, or of token lists)."""
    if "rejected_ids" in example:
        ids = example["rejected_ids"]
        return bool(ids) and isinstance(ids[0], list)
    rejected = example.get("rejected")
    return isinstance(rejected, list) and bool(rejected) and not isinstance(rejected[0], dict)


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
    logits = rejected_rewards - chosen_rewards[group]
    if margin is not None:
        logits = logits + margin
    rows = chosen_rewards.shape[0]
    # logsumexp per row, stable: subtract each row's max before exponentiating
    row_max = logits.new_full((rows,), float("-inf")).scatter_reduce(0, group, logits.detach(), reduce="amax")
    sums = logits.new_zeros(rows).index_add(0, group, torch.exp(logits - row_max[group]))
    return F.softplus(row_max + torch.log(sums))
