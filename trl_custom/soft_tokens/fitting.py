# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Cold start: one new condition (a domain, a user) fitted from `k` examples, everything else frozen.

[`fit_new_row`] is the one fitter behind [`~trl_custom.fit_new_condition`] (reward models, Bradley-Terry loss) and
[`~trl_custom.fit_new_user`] (policies, DPO loss): it freezes the model and every existing row of its soft tokens,
puts the model in eval mode (no dropout: the fit is deterministic), fits the new row (for `"table"`: its
`num_tokens x hidden` tokens; `"lowrank"`/`"prototype"`: its `dim` or `num_prototypes` numbers) with Adam on the
caller's loss, then appends it as a new row and restores what it froze. Other conditions' outputs stay bit-identical.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .module import SoftTokens


def batches(num_examples: int, batch_size: int | None, seed: int) -> Iterator[list[int]]:
    """Endless batches of example indices: passes over a seeded shuffle, each cut into `batch_size` (`None`: all)."""
    rng = random.Random(seed)
    size = num_examples if batch_size is None else batch_size
    while True:
        order = list(range(num_examples))
        rng.shuffle(order)
        for start in range(0, num_examples, size):
            yield order[start : start + size]


def fit_new_row(
    model: nn.Module,
    soft_tokens: SoftTokens,
    loss: Callable[[list[int], torch.Tensor], torch.Tensor],
    num_examples: int,
    *,
    steps: int,
    learning_rate: float,
    batch_size: int | None = None,
    init_row: int = 0,
    seed: int = 0,
    progress: bool = False,
    desc: str = "Fitting",
) -> int:
    """
    Fit and append a new row of `soft_tokens` (attached to `model`); returns its id.

    Args:
        model (`nn.Module`): The model the soft tokens belong to (frozen and in eval mode while fitting).
        soft_tokens ([`SoftTokens`]): Its soft-token module.
        loss (`Callable`): `loss(indices, tokens)`: the loss of the examples `indices` when the model reads the soft
            tokens `tokens` (`(1, num_tokens, hidden)`, to be expanded to the batch).
        num_examples (`int`): Number of examples (`k >= 1`).
        steps (`int`): Adam steps.
        learning_rate (`float`): Adam's learning rate.
        batch_size (`int` or `None`): Examples per step (`None`: all); passes over a shuffle drawn from `seed`.
        init_row (`int`): The existing row the new one starts from (0: the generic entry).
        seed (`int`): Seed of the example order.
        progress (`bool`), desc (`str`): A progress bar and its label.
    """
    if num_examples < 1 or steps < 1:
        raise ValueError(f"fit_new_row needs at least one example and one step (got {num_examples}, {steps}).")
    rows = soft_tokens.rows
    with torch.no_grad():
        start = rows[init_row].detach().clone().float()
        if soft_tokens.config.kind != "table" and init_row == 0:  # the generic entry (prototype: their mean)
            start = torch.zeros_like(start)
    row = nn.Parameter(start)
    optimizer = torch.optim.Adam([row], lr=learning_rate)
    frozen = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    order = batches(num_examples, batch_size, seed)
    try:
        with tqdm(total=steps, desc=desc, disable=not progress) as bar:
            for _ in range(steps):
                tokens = soft_tokens.tokens_of_rows(row.to(rows.dtype).unsqueeze(0))
                value = loss(next(order), tokens)
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{value.item():.4f}")
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return soft_tokens.add_row(row.detach())


def epochs_to_steps(num_epochs: int, num_examples: int, batch_size: int | None) -> int:
    """Optimizer steps of `num_epochs` passes over `num_examples` in batches of `batch_size` (`None`: all)."""
    return num_epochs * math.ceil(num_examples / (batch_size or num_examples))
