# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The metrics [`CustomRewardTrainer`] logs in `trainer._metrics[mode]`: TRL's `RewardTrainer` metrics for the batches
that do not go through its `compute_loss` (padding-free, listwise), and ours (`ranking_loss`, `accuracy/<condition>`,
`imitation_loss`, `top1_accuracy`)."""

import torch
import torch.nn as nn


def log_listwise_metrics(trainer, mode, attention_mask, chosen, rejected, group, condition_ids) -> None:
    """TRL's reward metrics over every chosen/rejected pair of a listwise batch, `top1_accuracy` and
    `accuracy/<condition>`."""
    metrics = trainer._metrics[mode]
    gather = trainer.accelerator.gather_for_metrics
    if mode == "train":
        trainer._total_train_tokens += gather(attention_mask.sum()).sum().item() // trainer._tp_size
    metrics["num_tokens"] = [trainer._total_train_tokens]
    with torch.no_grad():
        chosen, rejected = chosen.detach(), rejected.detach()
        all_rewards = trainer.accelerator.gather(torch.cat([chosen, rejected]))
        metrics["min_reward"].append(all_rewards.min().item())
        metrics["mean_reward"].append(all_rewards.mean().item())
        metrics["max_reward"].append(all_rewards.max().item())
        wins = (chosen[group] > rejected).float()
        metrics["accuracy"].append(gather(wins.mean()).mean().item())
        metrics["margin"].append(gather((chosen[group] - rejected).mean()).mean().item())
        losses = torch.zeros_like(chosen).index_add(0, group, 1.0 - wins)
        metrics["top1_accuracy"].append(gather((losses == 0).float().mean()).mean().item())
        if condition_ids is not None:
            names = trainer.conditioning.names
            ids = gather(condition_ids[group]).tolist()
            for condition_id, flag in zip(ids, gather(wins).tolist(), strict=True):
                metrics[f"accuracy/{names[condition_id]}"].append(flag)


def log_trl_metrics(trainer, mode, attention_mask, rewards) -> None:
    """The metrics TRL's `RewardTrainer.compute_loss` logs, for the batches that do not go through it."""
    metrics = trainer._metrics[mode]
    if mode == "train":
        num_tokens = trainer.accelerator.gather_for_metrics(attention_mask.sum()).sum().item()
        trainer._total_train_tokens += num_tokens // trainer._tp_size
    metrics["num_tokens"] = [trainer._total_train_tokens]
    with torch.no_grad():
        rewards_chosen, rewards_rejected = torch.chunk(rewards.detach(), chunks=2)
        all_rewards = trainer.accelerator.gather(rewards.detach())
        metrics["min_reward"].append(all_rewards.min().item())
        metrics["mean_reward"].append(all_rewards.mean().item())
        metrics["max_reward"].append(all_rewards.max().item())
        correct = (rewards_chosen > rewards_rejected).float()
        metrics["accuracy"].append(trainer.accelerator.gather_for_metrics(correct.mean()).mean().item())
        margin = (rewards_chosen - rewards_rejected).mean()
        metrics["margin"].append(trainer.accelerator.gather_for_metrics(margin).mean().item())


def log_our_metrics(trainer, mode, rewards, margin, condition_ids, imitation_loss) -> None:
    """`ranking_loss` (the Bradley-Terry term alone), `accuracy/<condition>` and `imitation_loss`."""
    metrics = trainer._metrics[mode]
    with torch.no_grad():
        rewards_chosen, rewards_rejected = torch.chunk(rewards.detach(), chunks=2)
        logits = rewards_chosen - rewards_rejected - (margin if margin is not None else 0.0)
        ranking_loss = -nn.functional.logsigmoid(logits).mean()
        metrics["ranking_loss"].append(trainer.accelerator.gather_for_metrics(ranking_loss).mean().item())
        if imitation_loss is not None:
            imitation_loss = trainer.accelerator.gather_for_metrics(imitation_loss.detach()).mean().item()
            metrics["imitation_loss"].append(imitation_loss)
        if condition_ids is not None:
            ids = trainer.accelerator.gather_for_metrics(condition_ids).tolist()
            flags = trainer.accelerator.gather_for_metrics((rewards_chosen > rewards_rejected).float()).tolist()
            names = trainer.conditioning.names
            for condition_id, flag in zip(ids, flags, strict=True):
                metrics[f"accuracy/{names[condition_id]}"].append(flag)
