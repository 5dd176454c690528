# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Trainers as the benchmarks run them: the arguments every run shares, a variant (config overrides over stock TRL's
trainer or ours) turned into its trainer, a reward model trained and saved, and the reuse of a saved model whose
setup is unchanged.
"""

import json
import os
import time

from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

from trl_custom import (
    CustomRewardConfig,
    CustomRewardTrainer,
    PersonalizedDPOConfig,
    PersonalizedDPOTrainer,
    RewardScorer,
)

from .device import ON_GPU


SETUP_FILE = "benchmark_setup.json"  # beside a saved model: the setup it was trained with


def run_args(**overrides) -> dict:
    """
    `TrainingArguments` fields every benchmark run shares (no reports, no checkpoints, no progress bars; float32 on
    the device present, the GPU when there is one), then `overrides` (e.g. `bf16=ON_GPU` for bf16 mixed on a GPU).
    """
    return {
        "use_cpu": not ON_GPU,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        **overrides,
    }


def reward_trainer(overrides: dict | None, model, pairs, tokenizer, **config):
    """
    The trainer of a reward-model variant: `overrides` `None` is stock TRL (`RewardTrainer`, on the pairs without
    their `domain` column), a dict is `CustomRewardTrainer` with `CustomRewardConfig(**config, **overrides)`.
    """
    if overrides is None:
        if "domain" in pairs.column_names:
            pairs = pairs.remove_columns("domain")
        return RewardTrainer(model, args=RewardConfig(**config), train_dataset=pairs, processing_class=tokenizer)
    return CustomRewardTrainer(
        model, args=CustomRewardConfig(**config, **overrides), train_dataset=pairs, processing_class=tokenizer
    )


def dpo_trainer(overrides: dict | None, model, pairs, tokenizer, peft_config, **config):
    """
    The trainer of a DPO variant: `overrides` `None` is stock TRL (`DPOTrainer`, which ignores the user column), a
    dict is `PersonalizedDPOTrainer` with `PersonalizedDPOConfig(**config, **overrides)`.
    """
    if overrides is None:
        return DPOTrainer(
            model, args=DPOConfig(**config), train_dataset=pairs, processing_class=tokenizer, peft_config=peft_config
        )
    return PersonalizedDPOTrainer(
        model,
        args=PersonalizedDPOConfig(**config, **overrides),
        train_dataset=pairs,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def dpo_run_args(args, output_dir, precompute_ref_log_probs=None) -> dict:
    """
    The DPO arguments of the P-DPO benchmarks, from their command line (`sft_coef`, `max_length`, `batch_size`,
    `learning_rate`, `epochs`, `beta`, `precompute_ref_log_probs`, `seed`): `sft_coef` > 0 adds the chosen-response
    NLL through TRL's own loss (`loss_type=["sigmoid", "sft"]`); held-out pairs are evaluated one by one (TRL averages
    batch means: batches of 1 give the exact per-pair accuracy).
    """
    if args.sft_coef > 0:
        loss = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, args.sft_coef])
    else:
        loss = {}
    if precompute_ref_log_probs is None:
        precompute_ref_log_probs = args.precompute_ref_log_probs
    return run_args(
        **loss,
        output_dir=output_dir,
        seed=args.seed,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=1,
        precompute_ref_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_train_epochs=args.epochs,
        beta=args.beta,
        precompute_ref_log_probs=precompute_ref_log_probs,
        logging_steps=10,
    )


def train_reward_model(model_path, dataset, out_dir, note=None, **config):
    """
    Trains `CustomRewardTrainer` from `model_path` on `dataset` with `CustomRewardConfig(out_dir, **run_args(
    **config))` and saves the model to `out_dir`; with `note`, prints `trained <out_dir> (<note>) in <s>s`. Returns
    the trainer, with the wall time of its `train()` alone (not building the trainer, not saving) in `train_seconds`.
    """
    args = CustomRewardConfig(out_dir, **run_args(**config))
    start = time.perf_counter()
    trainer = CustomRewardTrainer(model_path, args=args, train_dataset=dataset)
    begin = time.perf_counter()
    trainer.train()
    trainer.train_seconds = time.perf_counter() - begin
    trainer.save_model(out_dir)
    if note is not None:
        print(f"  trained {out_dir} ({note}) in {time.perf_counter() - start:.0f}s", flush=True)
    return trainer


def load_scorer(path, max_length, batch_size=64) -> RewardScorer:
    """The saved reward model at `path` as a `RewardScorer`, on the GPU when there is one."""
    return RewardScorer.from_pretrained(
        path, max_length=max_length, batch_size=batch_size, device="cuda" if ON_GPU else None
    )


def same_setup(out_dir, setup: dict) -> bool:
    """Whether `out_dir` holds a model saved by [`record_setup`] with this `setup` (so it can be reused)."""
    stamp = os.path.join(out_dir, SETUP_FILE)
    if not os.path.isfile(stamp):
        return False
    with open(stamp) as f:
        return json.load(f) == setup


def record_setup(out_dir, setup: dict):
    """Writes `setup` beside the model saved in `out_dir` (call it once the model is saved)."""
    with open(os.path.join(out_dir, SETUP_FILE), "w") as f:
        json.dump(setup, f, indent=2)
