# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The timings of `benchmarks/many_users.py` (`--timing`), on the whole MiniLM reward model: `fit_new_condition` at
k = 16 (user model at the head vs in the input), and the training step with `--timing_users` users against 10, per
user model, side by side on the same batch."""

import os

import torch
from _shared import ON_GPU, first_batch, median_step_seconds, run_args
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer, fit_new_condition
from trl_custom.models import resolve_model_path


BATCH = 16  # pairs of the timed step and of the fit (k = 16)


def build(model_path, rows, users, kind, placement, args, name):
    """A CustomRewardTrainer on MiniLM with `users` as its conditions (the timings' models)."""
    config = CustomRewardConfig(
        **run_args(
            output_dir=f"/tmp/many-users-timing-{name}",
            max_length=args.max_length,
            max_steps=1,
            per_device_train_batch_size=BATCH,
            learning_rate=args.finetune_learning_rate,
        ),
        condition_mode="embedding",
        condition_column="user_id",
        conditions=users,
        condition_model=kind,
        condition_placement=placement,
        condition_learning_rate=1e-2,
        pooling="mean",
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return CustomRewardTrainer(model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)


def training_step(trainer, batch):
    """One step as the trainer takes it (forward, backward, its optimizer's step), on a fixed batch."""

    def step():
        trainer.compute_loss(trainer.model, dict(batch)).backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    trainer.model.train()
    trainer.create_optimizer()
    return step


def timing_section(queries, args) -> dict:
    """fit_new_condition at k = 16 on MiniLM (head vs input), and 100k vs 10 users' step time per user model."""
    model_path = resolve_model_path(args.model)
    users = [f"user-{i}" for i in range(10)]
    items = [queries[i % len(queries)] for i in range(BATCH)]
    rows = [{"prompt": q["query"], "chosen": q["responses"]["academy"], "rejected": q["responses"]["normal"],
             "user_id": users[i % 10]} for i, q in enumerate(items)]  # fmt: skip
    pairs = [{key: r[key] for key in ("prompt", "chosen", "rejected")} for r in rows]
    result = {"fit_seconds": {}, "step_seconds": {}, "ratio": {}}
    for placement in ("reward_head", "input"):
        trainer = build(model_path, rows, users, "prototype", placement, args, "fit")
        scorer = RewardScorer(trainer.model.eval(), trainer.processing_class, trainer.conditioning, batch_size=32)
        epochs = 30 if placement == "reward_head" else 10
        names = iter(range(10_000))

        def fit(scorer=scorer, epochs=epochs, names=names):
            fit_new_condition(scorer, f"new-{next(names)}", pairs, num_epochs=epochs)

        result["fit_seconds"][placement] = median_step_seconds({"fit": fit}, args.timing_reps)["fit"]
        result["fit_seconds"][f"{placement} (epochs)"] = epochs
        print(f"fit at k=16, {placement}: {result['fit_seconds'][placement]:.2f}s", flush=True)
        del trainer, scorer
    many = [f"user-{i}" for i in range(args.timing_users)]
    for kind in ("table", "lowrank", "prototype"):
        for placement in ("input", "reward_head"):
            trainers = {
                n: build(model_path, rows, u, kind, placement, args, n) for n, u in (("10", users), ("many", many))
            }
            steps = {n: training_step(t, first_batch(t, BATCH)) for n, t in trainers.items()}
            steps = median_step_seconds(steps, args.timing_reps)
            name = f"{kind}, {placement}"
            result["step_seconds"][name] = steps
            result["ratio"][name] = steps["many"] / steps["10"]
            print(f"step time {name}: 10 users {steps['10']:.2f}s, {args.timing_users} users {steps['many']:.2f}s "
                  f"({result['ratio'][name]:.3f}x)", flush=True)  # fmt: skip
            del trainers
    lines = [
        f"Timing ({'GPU' if ON_GPU else f'CPU, {os.cpu_count()} cores'}; medians of {args.timing_reps}):",
        "",
        f"- fit_new_condition, k=16 pairs: at the head {result['fit_seconds']['reward_head']:.2f} s "
        f"({result['fit_seconds']['reward_head (epochs)']} epochs); in the input "
        f"{result['fit_seconds']['input']:.2f} s ({result['fit_seconds']['input (epochs)']} epochs)",
        "",
        f"| user model | step, 10 users (s) | step, {args.timing_users} users (s) | ratio |",
        "|---|---|---|---|",
    ]
    for name, steps in result["step_seconds"].items():
        lines.append(f"| {name} | {steps['10']:.3f} | {steps['many']:.3f} | {result['ratio'][name]:.3f} |")
    result["markdown"] = "\n".join(lines)
    return result
