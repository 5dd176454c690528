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
from .accuracy import ScoreCache, mean_of_known, pair_wins, resolve_condition, win_rate


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
        `dict`: `{"pairs": {value: accuracy, ..., "mean": mean over values, "all": accuracy over all pairs},
        "counts": {"pairs": {value: n, ..., "all": n}}, "condition_column": ..., "heatmap": {"rows", "columns",
        "values"}}` (no `heatmap` when there is nothing to condition on).

    Raises:
        `ValueError`: A conditioned model and a dataset without `condition_column`, or without `chosen`/`rejected`;
            a row whose `prompt`/`chosen`/`rejected` is neither text nor messages.
    """
    cache = {} if cache is None else cache
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
    chosen, rejected = dataset["chosen"], dataset["rejected"]
    values = [_value(v) for v in dataset[condition_column]] if has_column else [None] * n
    own = [None if v == NO_CONDITION_VALUE else v for v in values] if conditioned else [None] * n
    wins = pair_wins(scorer, prompts, chosen, rejected, own, cache, progress, "Scoring pairs")
    by_value: dict[str, list[bool]] = defaultdict(list)
    for win, value in zip(wins, values, strict=True):
        by_value[value].append(win)
    results: dict[str, Any] = {"pairs": {}, "counts": {"pairs": {}}, "condition_column": condition_column}
    if has_column:
        for value in sorted(by_value):
            results["pairs"][value] = win_rate(by_value[value])
            results["counts"]["pairs"][value] = len(by_value[value])
        results["pairs"]["mean"] = mean_of_known(results["pairs"][v] for v in sorted(by_value))
    results["pairs"][ALL_PAIRS] = win_rate(wins)
    results["counts"]["pairs"][ALL_PAIRS] = n
    if with_heatmap and has_column and (conditioned or heatmap_rows):
        rows = heatmap_rows or [*scorer.conditioning.conditions, GENERIC_CONDITION]
        results["heatmap"] = _heatmap(scorer, prompts, chosen, rejected, values, rows, cache, progress)
    return results


def _value(value) -> str:
    return NO_CONDITION_VALUE if is_missing_condition(value) else str(value)


def _heatmap(scorer, prompts, chosen, rejected, values, rows, cache, progress) -> dict[str, Any]:
    """Row `r`, column `c`: accuracy on the pairs of condition `c` when the model is given condition `r`."""
    n = len(values)
    forced = [resolve_condition(scorer, r) for r in rows]
    wins = pair_wins(
        scorer,
        list(prompts) * len(rows),
        list(chosen) * len(rows),
        list(rejected) * len(rows),
        [c for c in forced for _ in range(n)],
        cache,
        progress,
        "Scoring heatmap",
    )
    columns = sorted(set(values))
    matrix = []
    for i in range(len(rows)):
        row = wins[i * n : (i + 1) * n]
        matrix.append([win_rate([w for w, v in zip(row, values, strict=True) if v == c]) for c in columns])
    return {"rows": list(rows), "columns": columns, "values": matrix}
