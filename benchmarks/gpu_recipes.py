# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""GPU check of the large-model recipes: a few steps of each, with peak GPU memory and tokens/s.

    python benchmarks/gpu_recipes.py --tokenizer DIR --dsp_file dsp_queries.dev.json --output_dir outputs/gpu-recipes

Launches the real recipes (`accelerate launch --config_file trl_custom/accelerate_configs/<x>.yaml recipes/<y>.py
--config trl_custom/recipes/<z>.yaml`) with their model replaced by a randomly initialised model of a real
architecture's shape (default: SmolLM2-1.7B, Llama architecture, 1.7B parameters; random weights measure memory and
speed, not quality, and need no download), on one GPU (`--num_processes 1`), for `--max_steps` steps at `--max_length`
tokens. Peak memory is the highest `memory.used` nvidia-smi reports during the run (what the process holds, CUDA
context and allocator cache included); tokens/s is the trainer's non-padding token count over its training time (the
first, slower step included).
Results: `<output_dir>/results.json` and a markdown table on stdout (quoted in benchmarks/RESULTS.md).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch
from _shared import SHAPES, llama_config, save_results


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (accelerate config, recipe script, recipe YAML, kind of model, extra flags)
RUNS = {
    "reward, ZeRO-3 full": ("deepspeed_zero3", "reward", "dsp_stage3_customized_llama8b_full", "reward", []),
    "reward, QLoRA (nf4)": ("single_gpu", "reward", "dsp_stage3_customized_llama8b_qlora", "reward", []),
    "P-DPO, ZeRO-3 full": ("deepspeed_zero3", "dpo", "pdpo_llama8b_full", "causal", []),
    "P-DPO, QLoRA (nf4)": ("single_gpu", "dpo", "pdpo_llama8b_qlora", "causal", []),
    "reward, bf16 full, no DeepSpeed": ("single_gpu", "reward", "dsp_stage3_customized_llama8b_full", "reward", []),
    "P-DPO, LoRA bf16": ("single_gpu", "dpo", "pdpo_llama8b_lora", "causal", []),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="Tokenizer folder (e.g. SmolLM2's).")
    parser.add_argument("--dsp_file", required=True, help="DSP query file (training data of both recipes).")
    parser.add_argument("--output_dir", default="outputs/gpu-recipes")
    parser.add_argument("--shape", default="smollm2-1.7b", choices=sorted(SHAPES))
    parser.add_argument("--max_steps", type=int, default=10)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--timeout", type=int, default=240, help="Seconds per run.")
    return parser.parse_args(argv)


def build_models(args) -> dict[str, str]:
    """Random-weight reward model and causal LM of the chosen shape, saved in bf16 with the tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    paths = {}
    for kind, model_class in (("reward", LlamaForSequenceClassification), ("causal", LlamaForCausalLM)):
        path = os.path.join(args.output_dir, f"random-{args.shape}-{kind}")
        if not os.path.isfile(os.path.join(path, "config.json")):
            config = llama_config(args.shape, tokenizer)
            torch.manual_seed(0)
            with torch.device("cuda"):
                model = model_class(config).to(torch.bfloat16)
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            del model
            torch.cuda.empty_cache()
        paths[kind] = path
    return paths


class PeakMemory:
    """Highest nvidia-smi `memory.used` (MiB) on GPU 0, sampled every 0.2 s while running."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if out:
                self.peak = max(self.peak, int(out.splitlines()[0]))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(name, spec, models, args):
    accelerate_config, script, recipe, kind, extra = spec
    out_dir = os.path.join(args.output_dir, name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", ""))
    data_flag = "--dsp_file" if script == "reward" else "--synthetic_dsp_file"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        os.path.join(ROOT, "trl_custom", "accelerate_configs", f"{accelerate_config}.yaml"),
        "--num_processes",
        "1",
        os.path.join(ROOT, "recipes", f"{script}.py"),
        "--config",
        os.path.join(ROOT, "trl_custom", "recipes", f"{recipe}.yaml"),
        "--model_name_or_path",
        models[kind],
        data_flag,
        args.dsp_file,
        "--output_dir",
        out_dir,
        "--max_steps",
        str(args.max_steps),
        "--max_length",
        str(args.max_length),
        "--per_device_train_batch_size",
        str(args.batch_size),
        "--gradient_accumulation_steps",
        "1",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        *(["--evaluate_before", "false", "--max_eval_queries", "4"] if script == "reward" else []),
        *(["--users_per_group", "2", "--pairs_per_user", "40", "--test_size", "0.1"] if script == "dpo" else []),
        *extra,
    ]
    print(f"== {name}\n   {' '.join(command[2:])}", flush=True)
    start = time.perf_counter()
    with PeakMemory() as memory:
        try:
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
            returncode, log = result.returncode, result.stdout + result.stderr
        except subprocess.TimeoutExpired as error:
            returncode, log = "timeout", str(error.stdout or "") + str(error.stderr or "")
    wall = time.perf_counter() - start
    with open(os.path.join(args.output_dir, "logs.txt"), "a", encoding="utf-8") as f:
        f.write(f"\n\n===== {name} (rc={returncode})\n{log[-6000:]}")
    row = {"accelerate_config": accelerate_config, "recipe": recipe, "returncode": returncode, "wall_s": wall}
    row["peak_memory_gib"] = memory.peak / 1024
    state_file = os.path.join(out_dir, "trainer_state.json")
    if returncode == 0 and os.path.isfile(state_file):
        history = json.load(open(state_file))["log_history"]
        steps = [h for h in history if "loss" in h]
        final = next(h for h in reversed(history) if "train_runtime" in h)
        row.update(
            tokens=steps[-1]["num_tokens"],
            train_runtime_s=final["train_runtime"],
            tokens_per_s=steps[-1]["num_tokens"] / final["train_runtime"],
            first_loss=steps[0]["loss"],
            last_loss=steps[-1]["loss"],
        )
    print(f"   {row}", flush=True)
    return row


def markdown(results):
    lines = [
        f"| run ({results['shape']}, random weights, {results['max_steps']} steps, batch {results['batch_size']} "
        f"pairs, max_length {results['max_length']}) | accelerate config | recipe | peak GPU memory (GiB) | "
        "tokens/s | loss first → last |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["runs"].items():
        if "tokens_per_s" in row:
            lines.append(
                f"| {name} | {row['accelerate_config']} | {row['recipe']} | {row['peak_memory_gib']:.1f} | "
                f"{row['tokens_per_s']:.0f} | {row['first_loss']:.3f} → {row['last_loss']:.3f} |"
            )
        else:
            failed = f"failed (rc={row['returncode']})"
            lines.append(f"| {name} | {row['accelerate_config']} | {row['recipe']} | {failed} |||")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    models = build_models(args)
    results = {
        "shape": args.shape,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "device": torch.cuda.get_device_name(0),
        "runs": {},
    }
    for name in args.runs:
        results["runs"][name] = run(name, RUNS[name], models, args)
        save_results(results, args.output_dir)
    print(markdown(results))


if __name__ == "__main__":
    main()
