# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Evaluation of a (conditioned) reward model on Domain-Specific Preference (DSP) pairs and general preference files.

Reports, for each DSP domain `d`, the fraction of DSP pairs of domain `d` where the model prefers the chosen response
(`reward(chosen | condition) > reward(rejected | condition)`; ties count as errors), the same on general preference
files (generic condition), and a *heatmap*: row `r`, column `d` is the DSP accuracy on domain `d` when the model is
conditioned on `r` (the diagonal should be high, the off-diagonal cells low).

Beside each accuracy: its ties (pairs with equal rewards) and, among them, the pairs whose chosen and rejected inputs
are the same token ids once the condition is rendered and the sequence truncated (always a tie, whatever the model).
Condition values the model was not trained on (`scorer.conditioning.conditions`) are refused for a strict model;
otherwise they keep their rows, are named in `results["unseen"]` with how they were scored, and are left out of the
mean.

Every distinct `(prompt, response, condition)` is scored once: a chosen DSP response appears in 4 pairs, and the
heatmap rows share most of their sequences with the main evaluation.

Example:

```bash
trl-custom evaluate \\
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

# How a condition value the model was not trained on is scored, by conditioning mode.
# Outcome of a pair (see `pair_outcomes`): only WIN counts as correct.
WIN, LOSS, TIE, IDENTICAL = "win", "loss", "tie", "identical"


# ---------------------------------------------------------------------------------------------------- conditions
def resolve_condition(scorer, condition: str | None) -> str | None:
    """
    The condition value to give the scorer for a forced `condition`: `None` for `None`/`"none"`/`"generic"`/
    `"general"`, else `condition` itself.

    Raises:
        `ValueError`: If an embedding-mode model does not know `condition` (it would silently fall back to the generic
            entry); the message lists the conditions it knows. A text-mode condition the model was not trained on is
            returned: [`unseen_conditions`] says how it is scored (or refuses it for a strict model).
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
    if spec.mode == "none":
        logger.info(f"The model is unconditioned: condition={condition!r} does not change its rewards.")
    return condition


def unseen_conditions(scorer, values, where: str, warn: bool = True, apart: bool = True) -> dict[str, str]:
    """
    The condition values among `values` that the model was not trained on (not in `scorer.conditioning.conditions`),
    each with how it is scored: `{value: "scored with the generic entry" | "rendered into the template (zero-shot)"}`.
    Missing values (the generic entry) are not unseen, nor is anything for an unconditioned model, nor for a text-mode
    model whose training values were not recorded (an empty `conditions`, e.g. trained on a streaming dataset).

    Args:
        scorer ([`RewardScorer`]): The reward model.
        values (iterable): Condition values about to be given to the model.
        where (`str`): What holds them, for the messages, e.g. `"The DSP pairs"`.
        warn (`bool`, *optional*, defaults to `True`): Log one warning naming the unseen values.
        apart (`bool`, *optional*, defaults to `True`): The warning says that their rows are reported apart, out of
            the mean (`False`: a condition forced on every pair, only marked).

    Raises:
        `ValueError`: If the model is strict (`strict_conditions=True`) and some values are unseen; the message names
            them, the values the model knows and the fixes.
    """
    spec = scorer.conditioning
    if spec.mode == "none" or (spec.mode == "text" and not spec.conditions):
        return {}
    unseen = sorted({str(v) for v in values if not is_missing_condition(v)} - set(spec.conditions))
    if not unseen:
        return {}
    how = spec.how_unknown_is_scored()
    message = (
        f"{where}: {spec.column} value(s) {unseen} were not seen when training this model (it knows {spec.conditions})"
    )
    if spec.strict:
        raise ValueError(
            f"{message}, and the model is strict (strict_conditions=True): they would be {how}. Drop those rows, "
            "evaluate a model saved with strict_conditions=False (their accuracy is then reported on rows of their "
            "own, out of the mean), or fit the new condition first (trl_custom.fit_new_condition)."
        )
    if warn:
        then = "reported on rows of their own marked unseen, out of the mean" if apart else "marked unseen"
        logger.warning(f"{message}: they are {how}, {then}.")
    return {value: how for value in unseen}


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


def identical_pairs(
    scorer, prompts: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any], conditions: Sequence[Any]
) -> list[bool]:
    """
    For each pair, whether its chosen and rejected inputs are the same token ids as the model reads them
    (`scorer.encode`: condition rendered, truncation applied), e.g. two responses that differ only after a
    `truncation_mode="keep_start"` cut. Each distinct input is encoded once.
    """
    encoded: dict[tuple, list[int]] = {}

    def ids(prompt, response, condition):
        key = _cache_key(scorer, prompt, response, condition)
        if key not in encoded:
            encoded[key] = scorer.encode(prompt, response, key[2])
        return encoded[key]

    return [
        c == r or ids(p, c, k) == ids(p, r, k)
        for p, c, r, k in zip(prompts, chosen, rejected, conditions, strict=True)
    ]


def pair_outcomes(
    scorer,
    prompts: Sequence[Any],
    chosen: Sequence[Any],
    rejected: Sequence[Any],
    conditions: Sequence[Any],
    cache: ScoreCache | None = None,
    progress: bool = True,
    desc: str = "Scoring",
) -> list[str]:
    """
    For each pair: `"win"` (`reward(chosen | condition) > reward(rejected | condition)`), `"loss"`, `"tie"` (equal
    rewards) or `"identical"` (the same input after truncation, see [`identical_pairs`]: a tie, whatever numerical
    noise the two forward passes add). Only wins count as correct.
    """
    n = len(chosen)
    rewards = score_unique(
        scorer, list(prompts) * 2, list(chosen) + list(rejected), list(conditions) * 2, cache, progress, desc
    )
    same = identical_pairs(scorer, prompts, chosen, rejected, conditions)
    return [
        IDENTICAL if same[i] else WIN if rewards[i] > rewards[n + i] else TIE if rewards[i] == rewards[n + i] else LOSS
        for i in range(n)
    ]


def accuracy_of(outcomes: Sequence[str]) -> float | None:
    """Fraction of wins; `None` for no pairs."""
    return sum(o == WIN for o in outcomes) / len(outcomes) if outcomes else None


def record(results: dict[str, Any], section: str, name: str, outcomes: Sequence[str], accuracy: bool = True) -> None:
    """
    `outcomes` in `results`: the accuracy as `results[section][name]` (unless `accuracy=False`), the number of pairs,
    of ties and of identical-after-truncation pairs as `results["counts" | "ties" | "identical"][section][name]`.
    """
    if accuracy:
        results[section][name] = accuracy_of(outcomes)
    results["counts"][section][name] = len(outcomes)
    results["ties"][section][name] = sum(o in (TIE, IDENTICAL) for o in outcomes)
    results["identical"][section][name] = sum(o == IDENTICAL for o in outcomes)


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
        "counts": {"dsp": {domain: n_pairs, ..., "total": n}, "general": {file stem: n_pairs}}, "ties": {same keys
        as counts: pairs with equal rewards}, "identical": {same keys: those of the ties whose chosen and rejected
        inputs are the same after truncation}, "unseen": {condition value: how it was scored}, "condition":
        condition, "dsp_by_rejected": {domain: {rejected response: accuracy}}}`. Ties count as errors. Domains
        without pairs have accuracy `None` and are left out of the mean; so are, with `condition="auto"`, the
        domains the model was not trained on (named in `unseen`; their own rows stay). With a forced condition
        that the model was not trained on, `unseen` names it (every row is scored under it). `dsp_by_rejected` breaks
        each domain's accuracy down by the competing response (`academy`, ..., `normal`): which other style the
        model confuses with the domain's.

    Raises:
        `ValueError`: For a strict model (`strict_conditions=True`) given condition values it was not trained on,
            before anything is scored (see [`unseen_conditions`]).
    """
    cache = {} if cache is None else cache
    sections = ("dsp", "general")
    results: dict[str, Any] = {s: {} for s in sections}
    results.update({key: {s: {} for s in sections} for key in ("counts", "ties", "identical")})
    results.update(condition=condition, unseen={})
    if queries is not None:
        if isinstance(queries, (str, os.PathLike)):
            queries = load_dsp_queries(queries)
        auto = condition == AUTO_CONDITION
        rows = _dsp_rows(queries, max_queries)
        domains = rows["domain"]
        if auto:
            conditions = domains if scorer.conditioning.mode != "none" else [None] * len(domains)
            where = "The DSP pairs"
        else:
            conditions = [resolve_condition(scorer, condition)] * len(domains)
            where = f"condition={condition!r}"
        results["unseen"] = unseen_conditions(scorer, set(conditions), where, apart=auto)
        outcomes = pair_outcomes(
            scorer, rows["prompt"], rows["chosen"], rows["rejected"], conditions, cache, progress, "Scoring DSP pairs"
        )
        by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)  # (domain, rejected response) -> outcomes
        for outcome, domain, other in zip(outcomes, domains, rows["rejected_response"], strict=True):
            by_pair[domain, other].append(outcome)
        results["dsp_by_rejected"] = {}
        for d in DSP_DOMAINS:
            others = [o for o in DSP_RESPONSE_KEYS if o != d]
            record(results, "dsp", d, [x for o in others for x in by_pair[d, o]])
            results["dsp_by_rejected"][d] = {o: accuracy_of(by_pair[d, o]) for o in others}
        seen = [d for d in DSP_DOMAINS if not (auto and d in results["unseen"])]
        results["dsp"]["mean"] = mean_of_known(results["dsp"][d] for d in seen)
        record(results, "dsp", "total", outcomes, accuracy=False)

    taken: set[str] = set()
    for path in general_files:
        name = _general_name(path, taken)
        pairs = load_general_pairs(path, drop_ties=True, max_pairs=max_pairs, skip_empty=True)
        outcomes = pair_outcomes(
            scorer,
            pairs["prompt"],
            pairs["chosen"],
            pairs["rejected"],
            [None] * len(pairs),
            cache,
            progress,
            f"Scoring {name}",
        )
        record(results, "general", name, outcomes)
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
        `dict`: `{"rows": [...], "columns": [DSP domains], "values": [[accuracy of row r on domain d]], "unseen":
        {row: how it was scored}}` (`None` for a domain without pairs); `unseen` names the rows whose condition the
        model was not trained on.

    Raises:
        `ValueError`: A row the model cannot take (see [`resolve_condition`], [`unseen_conditions`]), before anything
            is scored.
    """
    if isinstance(queries, (str, os.PathLike)):
        queries = load_dsp_queries(queries)
    rows = list(default_heatmap_rows(scorer) if rows is None else rows)
    row_conditions = [resolve_condition(scorer, r) for r in rows]
    unseen = unseen_conditions(scorer, row_conditions, "The heatmap rows", apart=False)
    pairs = _dsp_rows(queries, max_queries)
    n = len(pairs["domain"])
    # One scoring call for all rows: better batches, one progress bar.
    outcomes = pair_outcomes(
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
        row = outcomes[i * n : (i + 1) * n]
        values.append(
            [accuracy_of([o for o, dom in zip(row, pairs["domain"], strict=True) if dom == d]) for d in DSP_DOMAINS]
        )
    return {"rows": rows, "columns": list(DSP_DOMAINS), "values": values, "unseen": unseen}
