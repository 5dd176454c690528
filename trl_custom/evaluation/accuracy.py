# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Evaluation of a (conditioned) reward model on Domain-Specific Preference (DSP) pairs and general preference files.

Reports, for each DSP domain `d`, the fraction of DSP pairs of domain `d` where the model prefers the chosen response
(`reward(chosen | condition) > reward(rejected | condition)`; ties count as errors), the same on general preference
files (generic condition), and a *heatmap*: row `r`, column `d` is the DSP accuracy on domain `d` when the model is
conditioned on `r` (the diagonal should be high, the off-diagonal cells low).

Every distinct `(prompt, response, condition)` is scored once: a chosen DSP response appears in 4 pairs, and the
heatmap rows share most of their sequences with the main evaluation.

Example:

```bash
python -m trl_custom.evaluate \\
    --model_name_or_path outputs/dsp-rm \\
    --dsp_file data/dsp.json --dsp_split test \\
    --general_files data/helpful.json data/harmless.json \\
    --output_json outputs/dsp-rm/eval.json --plot outputs/dsp-rm/heatmap.png
```

In Python:

```python
>>> from trl_custom import RewardScorer
>>> from trl_custom.data import load_dsp_queries
>>> from trl_custom.evaluation import evaluate_reward_model
>>> scorer = RewardScorer.from_pretrained("outputs/dsp-rm")
>>> results = evaluate_reward_model(scorer, load_dsp_queries("data/dsp.json"), general_files=["data/helpful.json"])
>>> results["dsp"]["mean"]
0.87
```
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..data.preferences import (
    DSP_DOMAINS,
    DSP_RESPONSE_KEYS,
    dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
)
from ..soft_tokens.spec import GENERIC as GENERIC_CONDITION
from ..soft_tokens.spec import is_missing as is_missing_condition


logger = logging.getLogger(__name__)

AUTO_CONDITION = "auto"
# Names that mean "no condition" (the generic entry / no template) on the command line and as heatmap rows.
NO_CONDITION_NAMES = ("none", GENERIC_CONDITION, "general")
# Heatmap row of an unconditioned model.
GENERAL_ROW = "general"

ScoreCache = dict[tuple[Any, Any, Any], float]


# ---------------------------------------------------------------------------------------------------- conditions
def resolve_condition(scorer, condition: str | None) -> str | None:
    """
    The condition value to give the scorer for a forced `condition`: `None` for `None`/`"none"`/`"generic"`/
    `"general"`, else `condition` itself.

    Raises:
        `ValueError`: If an embedding-mode model does not know `condition` (it would silently fall back to the generic
            entry); the message lists the conditions it knows.
    """
    if is_missing_condition(condition) or str(condition).lower() in NO_CONDITION_NAMES:
        return None
    condition = str(condition)
    spec = scorer.conditioning
    if spec.mode == "embedding" and condition not in spec.conditions:
        raise ValueError(
            f"condition={condition!r} is not known to this embedding-mode model; it knows: "
            f"{', '.join(spec.conditions) or '(none)'}. Use one of them, or 'none' for the generic entry."
        )
    if spec.mode == "text" and spec.conditions and condition not in spec.conditions:
        logger.warning(
            f"condition={condition!r} was not seen when training this text-mode model (it knows "
            f"{spec.conditions}); it is rendered into the template anyway."
        )
    if spec.mode == "none":
        logger.info(f"The model is unconditioned: condition={condition!r} does not change its rewards.")
    return condition


def default_heatmap_rows(scorer, condition: str | None = None) -> list[str]:
    """
    Heatmap rows of a model: the DSP domains it was conditioned on plus `"generic"`, or, for an unconditioned model,
    the single row `condition` (the domain it was trained for, when given) or `"general"`.
    """
    spec = scorer.conditioning
    if spec.mode == "none":
        if condition is None or str(condition).lower() in NO_CONDITION_NAMES + (AUTO_CONDITION,):
            return [GENERAL_ROW]
        return [str(condition)]
    return [c for c in spec.conditions if c in DSP_DOMAINS] + [GENERIC_CONDITION]


# ---------------------------------------------------------------------------------------------------- scoring
def _cache_key(scorer, prompt: Any, response: Any, condition: Any) -> tuple:
    """Key of a scored sequence; inputs that are identical (unconditioned model, unknown -> generic) share it."""
    spec = scorer.conditioning
    if spec.mode == "none" or is_missing_condition(condition):
        condition = None
    elif spec.mode == "embedding" and str(condition) not in spec.conditions:
        condition = None  # scored with the generic entry
    else:
        condition = str(condition)

    def freeze(x):  # conversational messages are lists of dicts
        return json.dumps(x, sort_keys=True) if isinstance(x, (list, dict)) else x

    return (freeze(prompt), freeze(response), condition)


def score_unique(
    scorer,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    conditions: Sequence[Any],
    cache: ScoreCache | None = None,
    progress: bool = True,
    desc: str = "Scoring",
) -> list[float]:
    """
    Rewards of `(prompt, response, condition)` triples, scoring each distinct triple once (and none found in `cache`,
    which is updated in place).
    """
    cache = {} if cache is None else cache
    keys = [_cache_key(scorer, p, r, c) for p, r, c in zip(prompts, responses, conditions, strict=True)]
    todo: dict[tuple, tuple[Any, Any, Any]] = {}
    for key, p, r, c in zip(keys, prompts, responses, conditions, strict=True):
        if key not in cache and key not in todo:
            todo[key] = (p, r, key[2])
    if todo:
        logger.info(f"{desc}: {len(todo)} distinct sequences for {len(keys)} requests")
        ps, rs, cs = zip(*todo.values(), strict=True)
        rewards = scorer.score(list(ps), list(rs), list(cs), progress=progress, desc=desc)
        cache.update(zip(todo, rewards, strict=True))
    return [cache[key] for key in keys]


def pair_wins(
    scorer,
    prompts: Sequence[Any],
    chosen: Sequence[Any],
    rejected: Sequence[Any],
    conditions: Sequence[Any],
    cache: ScoreCache | None = None,
    progress: bool = True,
    desc: str = "Scoring",
) -> list[bool]:
    """For each pair, whether `reward(chosen | condition) > reward(rejected | condition)` (ties are losses)."""
    n = len(chosen)
    rewards = score_unique(
        scorer, list(prompts) * 2, list(chosen) + list(rejected), list(conditions) * 2, cache, progress, desc
    )
    return [rewards[i] > rewards[n + i] for i in range(n)]


def win_rate(wins: Sequence[bool]) -> float | None:
    """Fraction of wins; `None` for no pairs."""
    return sum(wins) / len(wins) if wins else None


def mean_of_known(values) -> float | None:
    """Mean of the values that are not `None`; `None` if there are none."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _dsp_rows(queries: list[dict], max_queries: int | None) -> dict[str, list]:
    return dsp_pairs(queries, max_queries=max_queries, rejected_column="rejected_response").to_dict()


def _general_name(path, taken: set[str]) -> str:
    stem = os.path.basename(os.fspath(path))
    for ext in (".jsonl", ".json"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}_{k}", k + 1
    taken.add(name)
    return name


# ---------------------------------------------------------------------------------------------------- public API
def evaluate_reward_model(
    scorer,
    queries: list[dict] | str | os.PathLike | None,
    general_files: Sequence[str | os.PathLike] = (),
    condition: str | None = AUTO_CONDITION,
    max_queries: int | None = None,
    max_pairs: int | None = None,
    progress: bool = True,
    cache: ScoreCache | None = None,
) -> dict[str, Any]:
    """
    DSP accuracy per domain and general-preference accuracy per file.

    Args:
        scorer ([`RewardScorer`]):
            The reward model to evaluate.
        queries (`list[dict]`, `str` or `None`):
            DSP queries as returned by [`~data.load_dsp_queries`] (or a path to a DSP file). `None` skips DSP.
        general_files (`Sequence[str]`, *optional*, defaults to `()`):
            General preference files (see [`~data.load_general_pairs`]); scored with the generic condition, ties and
            comparisons with empty responses dropped.
        condition (`str` or `None`, *optional*, defaults to `"auto"`):
            Condition of the DSP pairs: `"auto"` uses each pair's own domain for a conditioned model and no condition
            for an unconditioned one; `None`/`"none"`/`"generic"` forces no condition; any other value is forced for
            every pair.
        max_queries (`int` or `None`, *optional*):
            Use only the first `max_queries` DSP queries.
        max_pairs (`int` or `None`, *optional*):
            Use only the first `max_pairs` pairs of each general file.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.
        cache (`dict` or `None`, *optional*):
            Scores already computed (updated in place); pass the same dict to [`heatmap`] to reuse them.

    Returns:
        `dict`: `{"dsp": {domain: accuracy, ..., "mean": mean over domains}, "general": {file stem: accuracy},
        "counts": {"dsp": {domain: n_pairs, ..., "total": n}, "general": {file stem: n_pairs}}, "condition":
        condition, "dsp_by_rejected": {domain: {rejected response: accuracy}}}`. Domains without pairs have
        accuracy `None` and are left out of the mean. `dsp_by_rejected` breaks each domain's accuracy down by the
        competing response (`academy`, ..., `normal`): which other style the model confuses with the domain's.
    """
    cache = {} if cache is None else cache
    results: dict[str, Any] = {"dsp": {}, "general": {}, "counts": {"dsp": {}, "general": {}}, "condition": condition}
    if queries is not None:
        if isinstance(queries, (str, os.PathLike)):
            queries = load_dsp_queries(queries)
        auto = condition == AUTO_CONDITION
        forced = None if auto else resolve_condition(scorer, condition)
        rows = _dsp_rows(queries, max_queries)
        domains = rows["domain"]
        if auto and scorer.conditioning.mode != "none":
            conditions = domains
            unknown = sorted(set(domains) - set(scorer.conditioning.conditions))
            if unknown:
                logger.warning(
                    f"The model was not conditioned on DSP domain(s) {unknown} (it knows "
                    f"{scorer.conditioning.conditions}): "
                    "their pairs are scored with "
                    + (
                        "the generic entry."
                        if scorer.conditioning.mode == "embedding"
                        else "their name rendered into the template."
                    )
                )
        else:
            conditions = [forced] * len(domains)
        wins = pair_wins(
            scorer, rows["prompt"], rows["chosen"], rows["rejected"], conditions, cache, progress, "Scoring DSP pairs"
        )
        wins_by_pair: dict[tuple[str, str], list[bool]] = defaultdict(list)  # (domain, rejected response) -> wins
        for win, domain, other in zip(wins, domains, rows["rejected_response"], strict=True):
            wins_by_pair[domain, other].append(win)
        results["dsp_by_rejected"] = {}
        for d in DSP_DOMAINS:
            others = [o for o in DSP_RESPONSE_KEYS if o != d]
            domain_wins = [w for o in others for w in wins_by_pair[d, o]]
            results["dsp"][d] = win_rate(domain_wins)
            results["counts"]["dsp"][d] = len(domain_wins)
            results["dsp_by_rejected"][d] = {o: win_rate(wins_by_pair[d, o]) for o in others}
        results["dsp"]["mean"] = mean_of_known(results["dsp"][d] for d in DSP_DOMAINS)
        results["counts"]["dsp"]["total"] = len(wins)

    taken: set[str] = set()
    for path in general_files:
        name = _general_name(path, taken)
        pairs = load_general_pairs(path, drop_ties=True, max_pairs=max_pairs, skip_empty=True)
        wins = pair_wins(
            scorer,
            pairs["prompt"],
            pairs["chosen"],
            pairs["rejected"],
            [None] * len(pairs),
            cache,
            progress,
            f"Scoring {name}",
        )
        results["general"][name] = win_rate(wins)
        results["counts"]["general"][name] = len(wins)
    return results


def heatmap(
    scorer,
    queries: list[dict] | str | os.PathLike,
    rows: Sequence[str] | None = None,
    max_queries: int | None = None,
    progress: bool = True,
    cache: ScoreCache | None = None,
) -> dict[str, Any]:
    """
    DSP accuracy of every (condition, domain) combination.

    Args:
        scorer ([`RewardScorer`]):
            The reward model.
        queries (`list[dict]` or `str`):
            DSP queries (or a path to a DSP file).
        rows (`Sequence[str]` or `None`, *optional*):
            Conditions to give the model, one row each; `"generic"`/`"general"`/`"none"` mean no condition. Defaults
            to [`default_heatmap_rows`]: the DSP domains the model knows plus `"generic"`, or `"general"` for an
            unconditioned model.
        max_queries, progress, cache:
            See [`evaluate_reward_model`].

    Returns:
        `dict`: `{"rows": [...], "columns": [DSP domains], "values": [[accuracy of row r on domain d]]}` (`None` for a
        domain without pairs).
    """
    if isinstance(queries, (str, os.PathLike)):
        queries = load_dsp_queries(queries)
    rows = list(default_heatmap_rows(scorer) if rows is None else rows)
    row_conditions = [resolve_condition(scorer, r) for r in rows]
    pairs = _dsp_rows(queries, max_queries)
    n = len(pairs["domain"])
    # One scoring call for all rows: better batches, one progress bar.
    wins = pair_wins(
        scorer,
        pairs["prompt"] * len(rows),
        pairs["chosen"] * len(rows),
        pairs["rejected"] * len(rows),
        [c for c in row_conditions for _ in range(n)],
        cache,
        progress,
        "Scoring heatmap",
    )
    values = []
    for i in range(len(rows)):
        row_wins = wins[i * n : (i + 1) * n]
        values.append(
            [win_rate([w for w, dom in zip(row_wins, pairs["domain"], strict=True) if dom == d]) for d in DSP_DOMAINS]
        )
    return {"rows": rows, "columns": list(DSP_DOMAINS), "values": values}
