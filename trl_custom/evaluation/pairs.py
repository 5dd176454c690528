# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Accuracy of a (conditioned) reward model on any preference dataset in TRL's format (`prompt`/`chosen`/`rejected`, or
implicit-prompt `chosen`/`rejected`; standard or conversational) with a condition column (`domain`, `user_id`, ...):
per condition value, and the heatmap of the condition given to the model against the pairs' own condition.

```python
>>> from datasets import load_dataset
>>> from trl_custom import RewardScorer
>>> from trl_custom.evaluation import evaluate_pairs
>>> scorer = RewardScorer.from_pretrained("outputs/my-rm")
>>> results = evaluate_pairs(scorer, load_dataset("my/prefs", split="test"), condition_column="domain")
>>> results["pairs"]["mean"], results["heatmap"]["rows"]
```
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..data.checks import check_text_columns
from ..soft_tokens.spec import GENERIC as GENERIC_CONDITION
from ..soft_tokens.spec import is_missing as is_missing_condition
from .accuracy import (
    ScoreCache,
    accuracy_of,
    mean_of_known,
    pair_outcomes,
    record,
    resolve_condition,
    unseen_conditions,
)


ALL_PAIRS = "all"
NO_CONDITION_VALUE = "(none)"


def evaluate_pairs(
    scorer,
    dataset,
    condition_column: str | None = "domain",
    max_pairs: int | None = None,
    heatmap_rows: list[str] | None = None,
    with_heatmap: bool = True,
    progress: bool = True,
    cache: ScoreCache | None = None,
) -> dict[str, Any]:
    """
    Fraction of pairs where `reward(chosen | condition) > reward(rejected | condition)` (ties count as errors), per
    value of `condition_column`, each pair scored under its own condition (no condition for an unconditioned model).

    Args:
        scorer ([`RewardScorer`]): The reward model.
        dataset ([`~datasets.Dataset`]): Preference pairs: `chosen`, `rejected`, optional `prompt`, and
            `condition_column` (required when the model is conditioned).
        condition_column (`str` or `None`, *optional*, defaults to `"domain"`): The column with each pair's condition.
            `None` (or a dataset without the column, for an unconditioned model) reports the overall accuracy only.
        max_pairs (`int` or `None`, *optional*): Use only the first `max_pairs` pairs.
        heatmap_rows (`list[str]` or `None`, *optional*): Conditions to give the model, one heatmap row each
            (`"generic"`: no condition). Defaults to the model's conditions plus `"generic"`; no heatmap for an
            unconditioned model or a dataset without `condition_column`.
        with_heatmap (`bool`, *optional*, defaults to `True`): Compute the heatmap.
        progress, cache: See [`evaluate_reward_model`].

    Returns:
        `dict`: `{"pairs": {value: accuracy, ..., "mean": mean over the values the model was trained on, "all":
        accuracy over all pairs}, "counts": {"pairs": {value: n, ..., "all": n}}, "ties": {"pairs": {same keys:
        pairs with equal rewards}}, "identical": {"pairs": {same keys: those of the ties whose chosen and rejected
        inputs are the same after truncation}}, "unseen": {value: how it was scored}, "condition_column": ...,
        "heatmap": {"rows", "columns", "values", "unseen"}}` (no `heatmap` when there is nothing to condition on).
        Ties count as errors. Values the model was not trained on keep their rows, are named in `unseen` and are
        left out of `mean` (not out of `all`).

    Raises:
        `ValueError`: A conditioned model and a dataset without `condition_column`, or without `chosen`/`rejected`;
            a row whose `prompt`/`chosen`/`rejected` is neither text nor messages;
            or a strict model (`strict_conditions=True`) and condition values it was not trained on (before anything is
            scored).
    """
    cache = {} if cache is None else cache
    prompts, chosen, rejected, values, own = pair_columns(scorer, dataset, condition_column, max_pairs)
    has_column = values is not None
    results: dict[str, Any] = {"pairs": {}, **{key: {"pairs": {}} for key in ("counts", "ties", "identical")}}
    results["condition_column"] = condition_column
    results["unseen"] = unseen_conditions(scorer, set(own), f"The {condition_column!r} column of the evaluation pairs")
    rows = None
    if with_heatmap and has_column and (scorer.conditioning.mode != "none" or heatmap_rows):
        rows = heatmap_rows or [*scorer.conditioning.conditions, GENERIC_CONDITION]
        forced = [resolve_condition(scorer, r) for r in rows]
        heatmap_unseen = unseen_conditions(scorer, forced, "The heatmap rows", apart=False)
    outcomes = pair_outcomes(scorer, prompts, chosen, rejected, own, cache, progress, "Scoring pairs")
    if has_column:
        by_value: dict[str, list[str]] = defaultdict(list)
        for outcome, value in zip(outcomes, values, strict=True):
            by_value[value].append(outcome)
        for value in sorted(by_value):
            record(results, "pairs", value, by_value[value])
        seen = [v for v in sorted(by_value) if v not in results["unseen"]]
        results["pairs"]["mean"] = mean_of_known(results["pairs"][v] for v in seen)
    record(results, "pairs", ALL_PAIRS, outcomes)
    if rows is not None:
        matrix = _heatmap(scorer, prompts, chosen, rejected, values, forced, cache, progress)
        results["heatmap"] = {"rows": list(rows), **matrix, "unseen": heatmap_unseen}
    return results


def pair_columns(scorer, dataset, condition_column: str | None, max_pairs: int | None = None) -> tuple:
    """
    `(prompts, chosen, rejected, values, own)` of a preference dataset: `prompts` (`None`s for implicit-prompt
    data), each pair's `condition_column` value as a row name (`values`, `"(none)"` for a missing one; `None` without
    the column) and the condition it is scored under (`own`: `None` for a missing value or an unconditioned model).

    Raises:
        `ValueError`: No `chosen`/`rejected` column, or a conditioned model and no `condition_column`.
    """
    columns = dataset.column_names
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise ValueError(
            f"The evaluation dataset has no {missing} column(s) (columns: {columns}): it needs preference pairs in "
            "TRL's format (`prompt`, `chosen`, `rejected`)."
        )
    conditioned = scorer.conditioning.mode != "none"
    has_column = condition_column is not None and condition_column in columns
    if conditioned and not has_column:
        raise ValueError(
            f"The evaluation dataset has no {condition_column!r} column (columns: {columns}), but the model is "
            f"conditioned ({scorer.conditioning.mode} mode). Set the condition column to the one with each pair's "
            "condition."
        )
    if max_pairs is not None:
        dataset = dataset.select(range(min(max_pairs, len(dataset))))
    check_text_columns(dataset, "evaluation")
    n = len(dataset)
    prompts = dataset["prompt"] if "prompt" in columns else [None] * n
    values = [_value(v) for v in dataset[condition_column]] if has_column else None
    own = [None if v == NO_CONDITION_VALUE else v for v in values] if conditioned else [None] * n
    return prompts, dataset["chosen"], dataset["rejected"], values, own


def merge_results(results: dict[str, Any], pairs: dict[str, Any]) -> dict[str, Any]:
    """[`evaluate_reward_model`] `results` with [`evaluate_pairs`]' added (its per-section dicts merged in)."""
    for key, value in pairs.items():
        merge = key in ("counts", "ties", "identical", "unseen")
        results[key] = {**results.get(key, {}), **value} if merge else value
    return results


def _value(value) -> str:
    return NO_CONDITION_VALUE if is_missing_condition(value) else str(value)


def _heatmap(scorer, prompts, chosen, rejected, values, forced, cache, progress) -> dict[str, Any]:
    """Row `r`, column `c`: accuracy on the pairs of condition `c` when the model is given condition `forced[r]`."""
    n = len(values)
    outcomes = pair_outcomes(
        scorer,
        list(prompts) * len(forced),
        list(chosen) * len(forced),
        list(rejected) * len(forced),
        [c for c in forced for _ in range(n)],
        cache,
        progress,
        "Scoring heatmap",
    )
    columns = sorted(set(values))
    matrix = []
    for i in range(len(forced)):
        row = outcomes[i * n : (i + 1) * n]
        matrix.append([accuracy_of([o for o, v in zip(row, values, strict=True) if v == c]) for c in columns])
    return {"columns": columns, "values": matrix}
