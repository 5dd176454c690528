# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The metrics [`CustomRewardTrainer`] logs in TRL's per-mode metrics: TRL's `RewardTrainer` metrics for the batches
that do not go through its `compute_loss` (listwise: mirrored from it, fingerprinted in `trl_custom.trl_seams`), and
ours (`ranking_loss`, `accuracy/<condition>`, `imitation_loss`, `top1_accuracy`).

Every function takes the chosen rewards `(rows,)` and the rejected ones; `group` (`(rejected,)`, listwise batches)
names each rejected reward's row, and defaults to one rejected reward per row (pairwise batches).
"""

import torch
import torch.nn as nn

from .. import trl_seams


def _pair_chosen(chosen: torch.Tensor, group: torch.Tensor | None) -> torch.Tensor:
    """The chosen reward facing each rejected one."""
    return chosen if group is None else chosen[group]


def log_trl_metrics(trainer, mode, attention_mask, chosen, rejected, group=None) -> None:
    """The metrics TRL's `RewardTrainer.compute_loss` logs (over every chosen/rejected pair), for the batches that do
    not go through it."""
    metrics = trl_seams.metrics(trainer, mode)
    if mode == "train":
        trl_seams.count_train_tokens(trainer, attention_mask)
    metrics["num_tokens"] = [trl_seams.total_train_tokens(trainer)]
    with torch.no_grad():
        chosen, rejected = chosen.detach(), rejected.detach()
        all_rewards = trainer.accelerator.gather(torch.cat([chosen, rejected]))
        metrics["min_reward"].append(all_rewards.min().item())
        metrics["mean_reward"].append(all_rewards.mean().item())
        metrics["max_reward"].append(all_rewards.max().item())
        facing = _pair_chosen(chosen, group)
        correct = (facing > rejected).float()
        metrics["accuracy"].append(trainer.accelerator.gather_for_metrics(correct.mean()).mean().item())
        margin = (facing - rejected).mean()
        metrics["margin"].append(trainer.accelerator.gather_for_metrics(margin).mean().item())


def log_our_metrics(
    trainer, mode, chosen, rejected, margin, condition_ids, dropped, imitation_loss, group=None, ranking_loss=None
) -> None:
    """
    `ranking_loss` (the Bradley-Terry term alone, or the listwise loss given as `ranking_loss`), `accuracy/<condition>`
    over every chosen/rejected pair (named from `trainer._metric_names`; the pairs `condition_dropout` gave the
    generic entry, `dropped` (`(rows,)` bools or `None`), as `accuracy/dropped`), `imitation_loss`, and for listwise
    batches `top1_accuracy` (the chosen response above all its rejected ones).
    """
    metrics = trl_seams.metrics(trainer, mode)
    gather = trainer.accelerator.gather_for_metrics
    with torch.no_grad():
        chosen, rejected = chosen.detach(), rejected.detach()
        facing = _pair_chosen(chosen, group)
        if ranking_loss is None:
            logits = facing - rejected - (margin if margin is not None else 0.0)
            ranking_loss = -nn.functional.logsigmoid(logits).mean()
        metrics["ranking_loss"].append(gather(ranking_loss.detach()).mean().item())
        if imitation_loss is not None:
            metrics["imitation_loss"].append(gather(imitation_loss.detach()).mean().item())
        wins = (facing > rejected).float()
        if group is not None:
            losses = torch.zeros_like(chosen).index_add(0, group, 1.0 - wins)
            metrics["top1_accuracy"].append(gather((losses == 0).float().mean()).mean().item())
        if condition_ids is not None:
            names = [f"accuracy/{name}" for name in trainer._metric_names] + ["accuracy/dropped"]
            if dropped is not None:  # the dropped pairs' id: one past the names
                condition_ids = condition_ids.masked_fill(dropped, len(names) - 1)
            ids = gather(_pair_chosen(condition_ids, group)).tolist()
            for condition_id, flag in zip(ids, gather(wins).tolist(), strict=True):
                metrics[names[condition_id]].append(flag)
