# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Few-shot adaptation of a trained reward model with soft tokens to a condition (domain or user) it has never seen: one
new row of its soft tokens, fitted from `k` preference pairs with everything else frozen (the shared fitter,
[`~trl_custom.soft_tokens.fit_new_row`]).

A text-mode model needs no fitting: its condition is text, so a new name is rendered into the template as any other
(zero-shot). An unconditioned model has nothing to adapt.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from ..data.preferences import is_empty_response
from ..soft_tokens import GENERIC, fit_new_row, head_features, is_missing
from ..soft_tokens.fitting import epochs_to_steps
from ..soft_tokens.head import add_head_term
from .conditioning import reward_forward
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
    Add `condition` to a reward model with soft tokens and fit its row from `pairs`.

    Only the new row is trained, with the Bradley-Terry loss of training (`-logsigmoid(r_chosen - r_rejected)`), by
    Adam at `learning_rate`, for `num_epochs` passes over the pairs in a fixed order drawn from `seed`, with dropout
    off: the result is deterministic. The backbone, the reward head and every other row stay bit-identical, so the
    scores of every other condition (and of the generic entry) do not change. The row starts as a copy of the
    generic entry (or of `init_from`'s row), so the fitted condition starts by scoring like it.

    Afterwards the model scores `condition` at once (through `scorer`, the [`ConditionedRewardFunction`] built on
    it, or anything sharing its model and [`ConditioningSpec`]), and [`save_reward_model`] saves the extended
    vocabulary (in the model's record, `trl_custom.json`) and soft tokens. With no pairs nothing is added: the
    condition keeps the generic entry (an unknown value, refused by a `strict` model).

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
        `int`: The new condition's id (its soft-token row), or `0` (the generic entry) when `pairs` is empty.

    Example:

    ```python
    >>> scorer = RewardScorer.from_pretrained("outputs/dsp-rm")  # trained on academy, business, entertainment
    >>> fit_new_condition(scorer, "literature", literature_pairs[:16])
    4
    >>> save_reward_model(scorer.model, scorer.tokenizer, "outputs/dsp-rm-literature")
    ```
    """
    scorer = getattr(scorer, "scorer", scorer)  # a ConditionedRewardFunction holds its RewardScorer
    spec, soft_tokens = scorer.conditioning, scorer.soft_tokens
    if not spec.uses_soft_tokens or soft_tokens is None:
        hint = (
            "a text-mode model reads the condition as text: score the new name directly (zero-shot), or train on it"
            if spec.mode == "text"
            else "the model is not conditioned (condition_mode='none'): there are no soft tokens to extend"
        )
        raise ValueError(
            f"fit_new_condition needs a reward model with soft tokens (condition_mode='embedding'); {hint}."
        )
    condition = _check_new_condition(spec, condition)
    if init_from is not None and init_from not in spec.conditions:
        raise ValueError(f"init_from={init_from!r} is not a known condition; known: {spec.conditions}.")
    for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    pairs = list(pairs)
    # the new condition's name is rendered as training rendered it (text+embedding mode)
    encoded = [_encode_pair(scorer, pair, index, condition) for index, pair in enumerate(pairs)]
    if not encoded:
        return 0

    if scorer.placement == "reward_head":
        loss = _cached_head_loss(scorer, encoded)
    else:

        def loss(indices, tokens):
            batch = [encoded[i] for i in indices]
            input_ids, attention_mask = scorer.collate([c for c, _ in batch] + [r for _, r in batch])
            soft = tokens.expand(input_ids.shape[0], -1, -1)
            rewards = reward_forward(scorer.model, input_ids, attention_mask, soft_tokens=soft)["rewards"].float()
            chosen, rejected = rewards.chunk(2)
            return -F.logsigmoid(chosen - rejected).mean()

    new_id = fit_new_row(
        scorer.model,
        soft_tokens,
        loss,
        len(encoded),
        steps=epochs_to_steps(num_epochs, len(encoded), batch_size),
        learning_rate=learning_rate,
        batch_size=batch_size,
        init_row=spec.conditions.index(init_from) + 1 if init_from is not None else 0,
        seed=seed,
        progress=progress,
        desc=f"Fitting {condition!r}",
    )
    spec.conditions.append(condition)
    return new_id


def _cached_head_loss(scorer: RewardScorer, encoded: list[tuple[list[int], list[int]]]):
    """
    The Bradley-Terry loss of a condition at the reward head (`placement="reward_head"`) on features computed once:
    the backbone is frozen and in eval mode while the new row is fitted, so each sequence's reward is its head's
    reward plus `u . features` ([`~trl_custom.soft_tokens.head_features`]) and the fit runs no model forward.
    """
    sequences = [c for c, _ in encoded] + [r for _, r in encoded]
    was_training = scorer.model.training
    scorer.model.eval()
    cached = []
    try:
        for start in range(0, len(sequences), scorer.batch_size):
            input_ids, attention_mask = scorer.collate(sequences[start : start + scorer.batch_size])
            forward = partial(reward_forward, scorer.model, input_ids, attention_mask)
            cached.append(head_features(scorer.model, lambda: forward()["rewards"].float(), input_ids.shape[0]))  # noqa: B023
    finally:
        scorer.model.train(was_training)
    base = torch.cat([rewards for rewards, _ in cached]).unsqueeze(-1)
    features = torch.cat([feats for _, feats in cached])

    def loss(indices, tokens):
        rows = torch.tensor(indices + [len(encoded) + i for i in indices], device=features.device)
        vectors = tokens[:, 0].float().expand(len(rows), -1)
        chosen, rejected = add_head_term(features[rows], base[rows], vectors).squeeze(-1).chunk(2)
        return -F.logsigmoid(chosen - rejected).mean()

    return loss


def _check_new_condition(spec, condition: Any) -> str:
    if is_missing(condition) or not str(condition).strip():
        raise ValueError(f"condition={condition!r}: give the new condition a non-empty name.")
    condition = str(condition)
    if condition == GENERIC:
        raise ValueError(f"{GENERIC!r} is the name of the generic entry (row 0); choose another name.")
    if condition in spec.conditions:
        raise ValueError(
            f"The model already knows condition {condition!r} (row {spec.conditions.index(condition) + 1}); "
            "fit_new_condition adds a new one. Choose another name, or fine-tune the model on it."
        )
    return condition


def _encode_pair(
    scorer: RewardScorer, pair: dict[str, Any], index: int, condition: str
) -> tuple[list[int], list[int]]:
    for column in ("chosen", "rejected"):
        if is_empty_response(pair.get(column)):
            raise ValueError(
                f"Pair {index} has an empty '{column}': every pair needs a non-empty chosen and rejected response."
            )
    prompt = pair.get("prompt")
    return scorer.encode(prompt, pair["chosen"], condition), scorer.encode(prompt, pair["rejected"], condition)
