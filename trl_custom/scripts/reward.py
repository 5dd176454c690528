# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The reward recipe (`recipes/reward.py`): DSP/general data, [`CustomRewardTrainer`], accuracy before/after.

Stages of the DSP scheme, one YAML each under `recipes/`:
- stage 2, general RM fine-tuning: `general_files` only, `condition_mode: none`;
- stage 3, customized RM fine-tuning: `dsp_file` (+ `general_files` with `enrichment_ratio > 0` for general
  preference enrichment, `imitation_coef > 0` for customized preference imitation), starting from the stage-2 output.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from datasets import Dataset, Value, concatenate_datasets

from ..data.demo import make_demo_dsp_queries
from ..data.preferences import (
    DSP_DOMAINS,
    dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
    mix_general_preferences,
    split_dsp_queries,
)


HELD_OUT_DSP_FILE = "dsp_queries.json"


@dataclass
class RewardScriptArguments:
    """
    Data arguments of the reward recipe.

    Args:
        dsp_file (`str` or `None`): DSP query file (`{query, responses: {academy, ...}}`, JSON or JSON lines), or
            `"demo"` for the built-in synthetic demo set. Trains customized pairs conditioned on `domain`.
        general_files (`list[str]` or `None`): General preference files (`{text: [a, b], score: [sa, sb]}`).
        train_file (`str` or `None`): Preference pairs as JSON / JSON lines rows with `prompt`, `chosen`, `rejected`
            and optionally `margin` (e.g. written by `python -m trl_custom.augment`), used like one more general
            file: `general_eval_pairs` of them are held out for evaluation, the margins are trained on
            (`margin_coef` scales them; rows from other sources get margin 0).
        domains (`list[str]`): DSP domains to train on.
        test_size (`float`): Fraction of DSP queries held out for evaluation (never trained on).
        max_queries (`int` or `None`): Cap on training DSP queries (CPU-sized runs).
        max_eval_queries (`int` or `None`): Cap on held-out DSP queries used for evaluation.
        max_general_pairs (`int` or `None`): Cap on pairs read from each general file.
        enrichment_ratio (`float`): General preference enrichment: fraction of general pairs mixed into the
            customized stage (0 = off).
        evaluate_before (`bool`): Also evaluate the starting model, to print accuracy before/after.
        results_file (`str` or `None`): Where to write the before/after accuracies (JSON); default
            `<output_dir>/eval_results.json`.
    """

    dsp_file: str | None = field(default=None, metadata={"help": "DSP query file, or 'demo'."})
    general_files: list[str] | None = field(default=None, metadata={"help": "General preference files."})
    train_file: str | None = field(
        default=None, metadata={"help": "JSON/JSONL pairs (prompt, chosen, rejected[, margin]), e.g. augmented."}
    )
    domains: list[str] = field(default_factory=lambda: list(DSP_DOMAINS), metadata={"help": "DSP domains."})
    test_size: float = field(default=0.2, metadata={"help": "Fraction of DSP queries held out."})
    max_queries: int | None = field(default=None, metadata={"help": "Cap on training DSP queries."})
    max_eval_queries: int | None = field(default=None, metadata={"help": "Cap on held-out DSP queries."})
    max_general_pairs: int | None = field(default=None, metadata={"help": "Cap on pairs per general file."})
    general_eval_pairs: int = field(default=200, metadata={"help": "General pairs per file held out for evaluation."})
    enrichment_ratio: float = field(
        default=0.0, metadata={"help": "Fraction of general pairs in the customized stage."}
    )
    evaluate_before: bool = field(default=True, metadata={"help": "Evaluate the starting model too."})
    results_file: str | None = field(default=None, metadata={"help": "JSON file for the before/after accuracies."})

    def __post_init__(self):
        if self.dsp_file is None and not self.general_files and self.train_file is None:
            raise ValueError(
                "Give training data: --dsp_file FILE (or 'demo'), --general_files FILE [FILE ...] and/or --train_file "
                "FILE."
            )
        files = ([self.dsp_file] if self.dsp_file not in (None, "demo") else []) + list(self.general_files or [])
        for path in files + ([self.train_file] if self.train_file else []):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Data file not found: {path}. Fix the path in the YAML or on the command line."
                )
        if not 0.0 <= self.enrichment_ratio < 1.0:
            raise ValueError(f"enrichment_ratio must be in [0, 1), got {self.enrichment_ratio}.")
        if self.enrichment_ratio > 0 and not (self.dsp_file and (self.general_files or self.train_file)):
            raise ValueError(
                "enrichment_ratio > 0 mixes general pairs into DSP pairs: give --dsp_file and --general_files (or "
                "--train_file)."
            )


@dataclass
class RewardData:
    train: Dataset
    eval_queries: list[dict]
    general_eval_files: list[str]


def build_reward_data(
    args: RewardScriptArguments, eval_dir: str, condition_column: str = "domain", seed: int = 0
) -> RewardData:
    """
    Training pairs (DSP train queries, general pairs and `train_file` pairs, or a mix) and the held-out evaluation
    data, written to `eval_dir` in the formats the evaluator reads: DSP queries to `dsp_queries.json`, general pairs to
    `<file stem>.json` (`{text, score}`). When `train_file` has a `margin` column, pairs from other general files get
    margin 0.
    """
    eval_queries: list[dict] = []
    train = None
    if args.dsp_file:
        queries = make_demo_dsp_queries() if args.dsp_file == "demo" else load_dsp_queries(args.dsp_file)
        train_queries, eval_queries = split_dsp_queries(queries, args.test_size, seed=seed)
        eval_queries = eval_queries[: args.max_eval_queries] if args.max_eval_queries else eval_queries
        os.makedirs(eval_dir, exist_ok=True)
        with open(os.path.join(eval_dir, HELD_OUT_DSP_FILE), "w", encoding="utf-8") as f:
            json.dump(eval_queries, f, ensure_ascii=False)
        train = dsp_pairs(
            train_queries, domains=args.domains, condition_column=condition_column, max_queries=args.max_queries
        )
    general = None
    general_eval_files = []
    if args.general_files or args.train_file:
        parts = []
        os.makedirs(eval_dir, exist_ok=True)
        sources = [(path, lambda p: load_general_pairs(p, skip_empty=True)) for path in args.general_files or []]
        sources += [(args.train_file, load_train_file)] if args.train_file else []
        for path, load in sources:
            pairs = load(path).shuffle(seed=seed)
            held_out = min(args.general_eval_pairs, len(pairs) // 5)
            parts.append(
                pairs.select(range(held_out, min(len(pairs), held_out + (args.max_general_pairs or len(pairs)))))
            )
            eval_path = os.path.join(eval_dir, f"{os.path.splitext(os.path.basename(path))[0]}.json")
            write_general_eval(pairs.select(range(held_out)), eval_path)
            general_eval_files.append(eval_path)
        general = concatenate_datasets(_with_common_columns(parts))
    if train is None:
        train = general
    elif general is not None and args.enrichment_ratio > 0:
        train = mix_general_preferences(
            train, general, args.enrichment_ratio, seed=seed, condition_column=condition_column
        )
    return RewardData(train=train, eval_queries=eval_queries, general_eval_files=general_eval_files)


def load_train_file(path: str) -> Dataset:
    """
    Text preference pairs (`prompt` optional, `chosen`, `rejected`, optional `margin`) from JSON / JSON lines, checked
    row by row (see [`~trl_custom.margin.agreement.load_pairs_file`]); other columns (`agreement`, flags, ...) are
    kept aside.
    """
    from ..margin.agreement import load_pairs_file

    pairs = load_pairs_file(path)
    name = os.path.basename(path)
    for column in ("prompt", "chosen", "rejected"):
        if column in pairs.column_names:
            for index, value in enumerate(pairs[column]):
                if not isinstance(value, str):
                    raise ValueError(
                        f"{name}: row {index} has a {type(value).__name__} '{column}'; --train_file takes text pairs "
                        "(conversational pairs: build the dataset in Python and pass it to CustomRewardTrainer)."
                    )
    if "prompt" not in pairs.column_names:
        pairs = pairs.add_column("prompt", [""] * len(pairs))
    columns = ["prompt", "chosen", "rejected"] + (["margin"] if "margin" in pairs.column_names else [])
    return pairs.select_columns(columns)


def _with_common_columns(parts: list[Dataset]) -> list[Dataset]:
    """Give every part the same columns: `margin` (0.0 where absent) when any part has one."""
    if not any("margin" in part.column_names for part in parts):
        return [part.select_columns(["prompt", "chosen", "rejected"]) for part in parts]
    out = []
    for part in parts:
        if "margin" not in part.column_names:
            part = part.add_column("margin", [0.0] * len(part))
        part = part.select_columns(["prompt", "chosen", "rejected", "margin"])
        out.append(part.cast_column("margin", Value("float64")))
    return out


def write_general_eval(pairs: Dataset, path: str) -> None:
    """Held-out general pairs, written back in the `{text, score}` format the evaluator reads."""
    items = [
        {"text": [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]], "score": [1.0, 0.0]}
        for row in pairs
    ]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(items, f)


def print_before_after(before: dict | None, after: dict) -> str:
    """Accuracy per condition (held-out DSP domains, general files) before and after training."""
    lines = [f"{'held-out accuracy':<28}{'before':>8}{'after':>8}"]
    for section in ("dsp", "general"):
        for name, value in after.get(section, {}).items():
            old = before.get(section, {}).get(name) if before else None
            label = f"{'DSP ' if section == 'dsp' else 'general '}{name}"
            lines.append(
                f"{label:<28}{'' if old is None else f'{old:8.3f}':>8}{'' if value is None else f'{value:8.3f}':>8}"
            )
    return "\n".join(lines)
