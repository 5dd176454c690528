# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Few-shot adaptation of a trained embedding-mode reward model to a condition (domain or user) it has never seen: one
new row of the condition table, fitted from `k` preference pairs with everything else frozen.

A text-mode model needs no fitting: its condition is text, so a new name is rendered into the template as any other
(zero-shot). An unconditioned model has nothing to adapt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.preferences import is_empty_response
from .conditioning import GENERIC_CONDITION, is_missing_condition, reward_forward
from .scoring import RewardScorer


def fit_new_condition(
    scorer: RewardScorer,
    condition: str,
    pairs: Sequence[dict[str, Any]],
    *,
    num_epochs: int = 10,
    learning_rate: float = 1e-2,
    batch_size: int = 16,
    init_from: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> int:
    """
    Add `condition` to an embedding-mode reward model and fit its row of the condition table from `pairs`.

    Only the new row is trained, with the Bradley-Terry loss of training (`-logsigmoid(r_chosen - r_rejected)`), by
    Adam at `learning_rate`, for `num_epochs` passes over the pairs in a fixed order drawn from `seed`, with dropout
    off: the result is deterministic. The backbone, the reward head and every other row stay bit-identical, so the
    scores of every other condition (and of the generic entry) do not change. The row starts as a copy of the
    generic entry (or of `init_from`'s row), so the fitted condition starts by scoring like it.

    Afterwards the model scores `condition` at once (through `scorer`, the [`ConditionedRewardFunction`] built on
    it, or anything sharing its model and [`ConditioningSpec`]), and [`save_reward_model`] saves the extended
    vocabulary (`conditioning.json`) and table. With no pairs nothing is added: the condition keeps the generic
    entry (an unknown value, refused by a `strict` model).

    Args:
        scorer ([`RewardScorer`] or [`ConditionedRewardFunction`]):
            The embedding-mode reward model, e.g. `RewardScorer.from_pretrained(path)` or, for a model still in its
            trainer, `RewardScorer(trainer.model, trainer.processing_class, trainer.conditioning)`. Its
            `max_length` truncates the pairs as in scoring.
        condition (`str`): The new condition value (a domain name, a user id).
        pairs (`list[dict]` or `datasets.Dataset`): `k` preference pairs of that condition: `chosen`, `rejected`
            and optionally `prompt`, standard text or conversational, as in training. Other columns are not read.
        num_epochs (`int`, *optional*, defaults to `10`): Passes over the pairs.
        learning_rate (`float`, *optional*, defaults to `1e-2`): Adam's learning rate for the row (the scale of a
            condition table's own learning rate in training, `condition_learning_rate`).
        batch_size (`int`, *optional*, defaults to `16`): Pairs per step.
        init_from (`str`, *optional*): A known condition whose row the new one starts from (default: the generic
            entry).
        seed (`int`, *optional*, defaults to `0`): Seed of the pair order.
        progress (`bool`, *optional*, defaults to `False`): Show a progress bar.

    Returns:
        `int`: The new condition's id (its table row), or `0` (the generic entry) when `pairs` is empty.

    Example:

    ```python
    >>> scorer = RewardScorer.from_pretrained("outputs/dsp-rm")  # trained on academy, business, entertainment
    >>> fit_new_condition(scorer, "literature", literature_pairs[:16])
    4
    >>> save_reward_model(scorer.model, scorer.tokenizer, "outputs/dsp-rm-literature")
    ```
    """
    scorer = getattr(scorer, "scorer", scorer)  # a ConditionedRewardFunction holds its RewardScorer
    spec, table = scorer.conditioning, scorer.table
    if spec.mode != "embedding" or table is None:
        hint = (
            "a text-mode model reads the condition as text: score the new name directly (zero-shot), or train on it"
            if spec.mode == "text"
            else "the model is not conditioned (condition_mode='none'): there is no condition table to extend"
        )
        raise ValueError(f"fit_new_condition needs an embedding-mode reward model with a condition table; {hint}.")
    condition = _check_new_condition(spec, condition)
    if init_from is not None and init_from not in spec.conditions:
        raise ValueError(f"init_from={init_from!r} is not a known condition; known: {spec.conditions}.")
    for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    pairs = list(pairs)
    encoded = [_encode_pair(scorer, pair, index) for index, pair in enumerate(pairs)]
    if not encoded:
        return 0

    start_row = spec.conditions.index(init_from) + 1 if init_from is not None else 0
    new_row = _Row(table.weight[start_row])
    model = scorer.model
    frozen = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    optimizer = torch.optim.Adam(new_row.parameters(), lr=learning_rate)
    order_rng = random.Random(seed)
    steps = num_epochs * math.ceil(len(encoded) / batch_size)
    try:
        with tqdm(total=steps, desc=f"Fitting {condition!r}", disable=not progress) as bar:
            for _ in range(num_epochs):
                order = list(range(len(encoded)))
                order_rng.shuffle(order)
                for start in range(0, len(order), batch_size):
                    batch = [encoded[i] for i in order[start : start + batch_size]]
                    input_ids, attention_mask = scorer.collate([c for c, _ in batch] + [r for _, r in batch])
                    rewards = reward_forward(model, input_ids, attention_mask, table=new_row)["rewards"].float()
                    chosen, rejected = rewards.chunk(2)
                    loss = -F.logsigmoid(chosen - rejected).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)

    with torch.no_grad():
        grown = torch.cat([table.weight.detach(), new_row.weight.detach().to(table.weight.dtype)])
    table.weight = nn.Parameter(grown, requires_grad=table.weight.requires_grad)
    spec.conditions.append(condition)
    model.trl_custom_conditioning = spec
    return len(spec.conditions)


def _check_new_condition(spec, condition: Any) -> str:
    if is_missing_condition(condition) or not str(condition).strip():
        raise ValueError(f"condition={condition!r}: give the new condition a non-empty name.")
    condition = str(condition)
    if condition == GENERIC_CONDITION:
        raise ValueError(f"{GENERIC_CONDITION!r} is the name of the generic entry (row 0); choose another name.")
    if condition in spec.conditions:
        raise ValueError(
            f"The model already knows condition {condition!r} (row {spec.conditions.index(condition) + 1}); "
            "fit_new_condition adds a new one. Choose another name, or fine-tune the model on it."
        )
    return condition


def _encode_pair(scorer: RewardScorer, pair: dict[str, Any], index: int) -> tuple[list[int], list[int]]:
    for column in ("chosen", "rejected"):
        if is_empty_response(pair.get(column)):
            raise ValueError(
                f"Pair {index} has an empty '{column}': every pair needs a non-empty chosen and rejected response."
            )
    prompt = pair.get("prompt")
    return scorer.encode(prompt, pair["chosen"]), scorer.encode(prompt, pair["rejected"])


class _Row(nn.Module):
    """The row being fitted, as a condition table of its own that gives every sequence this one row (fp32)."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(start.detach().clone().float().unsqueeze(0))
        self.num_tokens = start.shape[0]

    def forward(self, condition_ids: torch.LongTensor) -> torch.Tensor:
        return self.weight.expand(condition_ids.shape[0], -1, -1)
