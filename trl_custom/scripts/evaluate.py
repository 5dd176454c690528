# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom evaluate` (or `python -m trl_custom evaluate`): accuracy of a reward model per DSP domain, per general
file, or per condition of any preference dataset (`--dataset_name`: a Hub id, a local folder/file, a `save_to_disk`
folder, with a `--condition_column`), as JSON, a table and a condition x evaluated-condition heatmap.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from ..data.preferences import load_dsp_queries, split_dsp_queries
from ..data.sources import load_dataset_name, resolve_data_file
from ..evaluation.accuracy import (
    AUTO_CONDITION,
    ScoreCache,
    default_heatmap_rows,
    evaluate_reward_model,
    heatmap,
    resolve_condition,
    unseen_conditions,
)
from ..evaluation.pairs import evaluate_pairs, merge_results
from ..evaluation.report import format_results, plot_heatmap
from .config_file import ArgumentParser, parse_args_with_config


logger = logging.getLogger(__name__)


def _test_size(value: str) -> float | int:
    try:
        return int(value)
    except ValueError:
        return float(value)


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog or "trl-custom evaluate",
        description="Evaluate a (conditioned) reward model on DSP pairs, general preference files, or any preference "
        "dataset with a condition column. Give --dsp_file and/or --general_files, or --dataset_name.",
    )
    parser.add_argument(
        "--model_name_or_path",
        required=True,
        help="Directory of a reward model saved by `CustomRewardTrainer.save_model` (or any sequence-classification "
        "reward model).",
    )
    parser.add_argument(
        "--dsp_file", default=None, help="DSP query file (JSON list or JSON lines): a path or an https:// URL."
    )
    parser.add_argument(
        "--general_files",
        nargs="*",
        default=[],
        help="General preference files (helpful / harmless / webgpt; paths or URLs), scored with no condition. Ties "
        "and comparisons with empty responses are dropped.",
    )
    parser.add_argument(
        "--dataset_name",
        default=None,
        help="A preference dataset in TRL's format (prompt/chosen/rejected): Hub id, local folder or file "
        "(json/jsonl/parquet/csv), or a save_to_disk folder. Scored per value of --condition_column.",
    )
    parser.add_argument("--dataset_config", default=None, help="Configuration name of --dataset_name.")
    parser.add_argument("--dataset_split", default="test", help="Split of --dataset_name to evaluate.")
    parser.add_argument(
        "--condition_column",
        default=None,
        help="Column of --dataset_name with each pair's condition (default: the model's condition column).",
    )
    parser.add_argument("--output_json", required=True, help="Where to write the results as JSON.")
    parser.add_argument("--plot", default=None, help="If set, save the condition x domain heatmap to this image file.")
    parser.add_argument(
        "--no_heatmap",
        action="store_true",
        help="Do not compute the condition x domain heatmap (computed by default; cheap thanks to score caching).",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="Sequences per forward pass.")
    parser.add_argument(
        "--max_length",
        type=int,
        default=None,
        help="Longer sequences are cut as in training (default: the training max_length saved with the model).",
    )
    parser.add_argument(
        "--dsp_split",
        choices=["all", "train", "test"],
        default="all",
        help="Which DSP queries to evaluate on: 'test' keeps the held-out queries of `split_dsp_queries` (same "
        "`--test_size` / `--seed` as the training recipe), 'all' every query.",
    )
    parser.add_argument(
        "--test_size",
        type=_test_size,
        default=0.2,
        help="Fraction (0 < x < 1) or number of held-out DSP queries. Ignored with `--dsp_split all`.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the DSP query split.")
    parser.add_argument(
        "--max_queries", type=int, default=None, help="Use only the first N DSP queries (after the split)."
    )
    parser.add_argument(
        "--max_pairs", type=int, default=None, help="Use only the first N pairs of each general file / the dataset."
    )
    parser.add_argument(
        "--condition",
        default=AUTO_CONDITION,
        help="Condition given to the model for every DSP pair: 'auto' (default) uses each pair's own domain for a "
        "conditioned model and none for an unconditioned one; 'none' forces no condition (generic entry); any other "
        "value (e.g. 'academy') is forced, and names the heatmap row of an unconditioned model trained for it.",
    )
    parser.add_argument(
        "--device", default=None, help="Device to score on (default: 'cuda' if available, else 'cpu')."
    )
    parser.add_argument("--no_progress", action="store_true", help="Hide the progress bars.")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    parser = make_parser(prog)
    args = parse_args_with_config(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if not (args.dsp_file or args.general_files or args.dataset_name):
        parser.error("give data: --dsp_file FILE_OR_URL and/or --general_files FILE [...], or --dataset_name NAME.")
    if args.dataset_name and args.dsp_file:
        parser.error("--dataset_name and --dsp_file both give conditioned pairs (and a heatmap): give one.")
    if not args.dsp_file and (args.dsp_split != "all" or args.condition != AUTO_CONDITION):
        parser.error("--dsp_split and --condition apply to --dsp_file (a dataset's pairs use their own condition).")
    if not args.dataset_name and (args.dataset_config or args.condition_column):
        parser.error("--dataset_config and --condition_column apply to --dataset_name.")
    try:
        dsp_file = resolve_data_file(args.dsp_file, "--dsp_file") if args.dsp_file else None
        general_files = [resolve_data_file(p, "--general_files") for p in args.general_files]
    except (FileNotFoundError, ConnectionError) as e:
        parser.error(str(e))
    if not os.path.isdir(args.model_name_or_path):
        parser.error(f"--model_name_or_path: model directory not found: {args.model_name_or_path}")
    if args.plot and args.no_heatmap:
        parser.error("--plot needs the heatmap: drop --no_heatmap.")

    import torch

    from ..conditioned_rm.scoring import RewardScorer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scorer = RewardScorer.from_pretrained(
        args.model_name_or_path,
        device=device,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )
    try:
        if args.condition != AUTO_CONDITION:  # refused before anything is scored
            forced = resolve_condition(scorer, args.condition)
            unseen_conditions(scorer, [forced], f"--condition {args.condition}", warn=False)
    except ValueError as e:
        parser.error(f"--condition: {e}")

    queries = None
    if dsp_file:
        queries = load_dsp_queries(dsp_file)
        n_all = len(queries)
        if args.dsp_split != "all":
            try:
                train, test = split_dsp_queries(queries, test_size=args.test_size, seed=args.seed)
            except ValueError as e:
                parser.error(f"--test_size: {e}")
            queries = train if args.dsp_split == "train" else test
        logger.info(f"DSP: {len(queries)} of {n_all} queries (split: {args.dsp_split})")

    progress = not args.no_progress
    cache: ScoreCache = {}
    condition_column = args.condition_column or scorer.conditioning.column
    pairs = None
    if args.dataset_name:  # first: its condition values are checked before anything is scored
        dataset = load_dataset_name(args.dataset_name, args.dataset_config)
        if args.dataset_split not in dataset:
            parser.error(f"--dataset_split {args.dataset_split!r}: {args.dataset_name} has splits {list(dataset)}.")
        try:
            pairs = evaluate_pairs(
                scorer,
                dataset[args.dataset_split],
                condition_column,
                max_pairs=args.max_pairs,
                with_heatmap=not args.no_heatmap,
                progress=progress,
                cache=cache,
            )
        except ValueError as e:
            parser.error(f"--dataset_name {args.dataset_name}: {e}")
    try:
        results = evaluate_reward_model(
            scorer,
            queries,
            general_files=general_files,
            condition=args.condition,
            max_queries=args.max_queries,
            max_pairs=args.max_pairs,
            progress=progress,
            cache=cache,
        )
    except ValueError as e:
        parser.error(str(e))
    if pairs is not None:
        merge_results(results, pairs)
    elif queries is not None and not args.no_heatmap:
        rows = default_heatmap_rows(scorer, args.condition)
        results["heatmap"] = heatmap(
            scorer, queries, rows, max_queries=args.max_queries, progress=progress, cache=cache
        )
    results["meta"] = {
        "model_name_or_path": args.model_name_or_path,
        "condition_mode": scorer.conditioning.mode,
        "conditions": scorer.conditioning.conditions,
        "dsp_file": args.dsp_file,
        "dsp_split": args.dsp_split,
        "test_size": args.test_size,
        "seed": args.seed,
        "n_queries": None if queries is None else len(queries[: args.max_queries] if args.max_queries else queries),
        "general_files": list(args.general_files),
        "dataset_name": args.dataset_name,
        "dataset_split": args.dataset_split if args.dataset_name else None,
        "condition_column": condition_column if args.dataset_name else None,
        "max_length": scorer.max_length,
    }

    os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(format_results(results))
    print(f"Results written to {args.output_json}")
    if args.plot:
        if "heatmap" not in results:
            parser.error("--plot: no heatmap (an unconditioned model, or no DSP/dataset pairs); drop --plot.")
        title = f"{os.path.basename(os.path.normpath(args.model_name_or_path))} ({scorer.conditioning.mode})"
        xlabel = f"evaluated {condition_column}" if args.dataset_name else "evaluated domain"
        plot_heatmap(results["heatmap"], args.plot, title=title, xlabel=xlabel)
        print(f"Heatmap written to {args.plot}")
    return results


if __name__ == "__main__":
    main()
