# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The speed sections of `gpu_scale.py`: reward-model training steps at a 1.7B shape (`rm_scale`) and P-DPO vs TRL's
DPO with LoRA (`dpo`), every variant on the same batches, interleaved (see `_shared.timing`). A variant is its config
overrides over stock TRL's trainer (`None`) or ours.
"""

import copy
import os

import torch
from _shared import (
    ON_GPU,
    Stepper,
    add_ratios,
    build_random_model,
    dpo_trainer,
    gib,
    load_tokenizer,
    lora_config,
    reward_trainer,
    run_args,
    run_interleaved,
)
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from .data import dsp_dpo_pairs, length_mix_pairs


RM_VARIANTS = {  # name: CustomRewardConfig overrides (None: TRL's RewardTrainer)
    "stock": None,
    "none": {"condition_mode": "none"},
    "text": {"condition_mode": "text"},
    "embedding": {"condition_mode": "embedding"},
    "packed": {"condition_mode": "none", "padding_free": True},
}
DPO_VARIANTS = {  # name: PersonalizedDPOConfig overrides (None: TRL's DPOTrainer)
    "TRL DPOTrainer": None,
    "P-DPO": {},
    "P-DPO packed": {"padding_free": True},
}
LORA = "r=16, alpha 32, q/k/v/o_proj"


def parameter_counts(model):
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return total, total - embedding


def step_args(output_dir, args, batch_size, max_length):
    """What every timed variant shares: bf16 mixed on a GPU, fp32 on the CPU, learning rate 1e-5."""
    return run_args(
        output_dir=output_dir,
        bf16=ON_GPU,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-5,
        seed=args.seed,
        max_length=max_length,
    )


def rm_scale(args, work_dir, deadline):
    tokenizer = load_tokenizer(args.tokenizer)
    needed = (args.rm_steps + args.rm_warmup) * args.rm_batch_size
    pairs, source = length_mix_pairs(args, tokenizer, needed, work_dir)
    base = build_random_model(args.rm_shape, tokenizer, LlamaForSequenceClassification)
    total, non_embedding = parameter_counts(base)
    print(
        f"  {args.rm_shape}: {total / 1e9:.3f}B parameters ({non_embedding / 1e9:.3f}B without embedding)", flush=True
    )

    def build(name):  # max_length None: the pairs fit max_length already, nothing to truncate or drop
        config = step_args(os.path.join(work_dir, f"rm-{name}"), args, args.rm_batch_size, None)
        return reward_trainer(RM_VARIANTS[name], copy.deepcopy(base), pairs, tokenizer, **config)

    steppers = {}
    for name in (n for n in RM_VARIANTS if n in args.rm_variants):
        steppers[name] = Stepper(name, lambda name=name: build(name))
        if args.gradient_checkpointing:
            steppers[name].trainer.model.gradient_checkpointing_enable({"use_reentrant": False})
    base = None  # each variant holds its own copy
    counter = steppers.get("stock") or steppers.get("none") or next(iter(steppers.values()))

    def count_tokens(indices):  # real DSP tokens of the batch, without condition tokens
        return int(counter.collate(indices)["attention_mask"].sum())

    batches = [list(range(s, s + args.rm_batch_size)) for s in range(0, needed, args.rm_batch_size)]
    real_tokens, done = run_interleaved(steppers, batches, args.rm_warmup, count_tokens, deadline)
    peak = gib(torch.cuda.max_memory_allocated()) if ON_GPU else None
    results = {
        "shape": args.rm_shape,
        "parameters": total,
        "non_embedding_parameters": non_embedding,
        "data": source,
        "batch_size_pairs": args.rm_batch_size,
        "timed_steps": done,
        "warmup_steps": args.rm_warmup,
        "real_tokens": real_tokens,
        "gradient_checkpointing": args.gradient_checkpointing,
        "variants": {},
    }
    for name, stepper in steppers.items():
        row = stepper.summary(real_tokens)
        if "tokens_per_s" in row:
            flops = 6 * non_embedding * row["tokens_per_s"]
            row["model_tflops"] = flops / 1e12
            row["mfu"] = flops / (args.peak_tflops * 1e12) if ON_GPU else None
        results["variants"][name] = row
    add_ratios(results["variants"], "stock")
    results["process_peak_memory_gib"] = peak
    del steppers
    return results


def dpo(args, work_dir, deadline):
    tokenizer = load_tokenizer(args.tokenizer)
    needed = (args.dpo_steps + args.dpo_warmup) * args.dpo_batch_size
    pairs, source = dsp_dpo_pairs(args, tokenizer, needed, work_dir)
    base = build_random_model(args.dpo_shape, tokenizer, LlamaForCausalLM)
    total, _ = parameter_counts(base)

    def build(name):
        config = step_args(os.path.join(work_dir, f"dpo-{name}"), args, args.dpo_batch_size, args.max_length)
        return dpo_trainer(DPO_VARIANTS[name], copy.deepcopy(base), pairs, tokenizer, lora_config(), **config)

    steppers = {name: Stepper(name, lambda name=name: build(name)) for name in DPO_VARIANTS}
    base = None  # each variant holds its own copy
    counter = steppers["TRL DPOTrainer"]

    def count_tokens(indices):  # prompt + completion tokens of the padded TRL batch
        return int(counter.collate(indices)["attention_mask"].sum())

    batches = [list(range(s, s + args.dpo_batch_size)) for s in range(0, needed, args.dpo_batch_size)]
    real_tokens, done = run_interleaved(steppers, batches, args.dpo_warmup, count_tokens, deadline)
    results = {
        "shape": args.dpo_shape,
        "parameters": total,
        "lora": LORA,
        "data": source,
        "users": sorted(set(pairs["user_id"])),
        "batch_size_pairs": args.dpo_batch_size,
        "timed_steps": done,
        "warmup_steps": args.dpo_warmup,
        "real_tokens": real_tokens,
        "variants": {name: stepper.summary(real_tokens) for name, stepper in steppers.items()},
    }
    add_ratios(results["variants"], "TRL DPOTrainer")
    del steppers
    return results
