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
>>> from trl_custom.evaluation.accuracy import evaluate_reward_model
>>> scorer = RewardScorer.from_pretrained("outputs/dsp-rm")
>>> results = evaluate_reward_model(scorer, load_dsp_queries("data/dsp.json"), general_files=["data/helpful.json"])
>>> results["dsp"]["mean"]
0.87
```
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..conditioned_rm.conditioning import GENERIC_CONDITION, is_missing_condition
from ..data.preferences import (
    DSP_DOMAINS,
    DSP_RESPONSE_KEYS,
    dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
    split_dsp_queries,
)


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
    spec = scorer.spec
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
    spec = scorer.spec
    if spec.mode == "none":
        if condition is None or str(condition).lower() in NO_CONDITION_NAMES + (AUTO_CONDITION,):
            return [GENERAL_ROW]
        return [str(condition)]
    return [c for c in spec.conditions if c in DSP_DOMAINS] + [GENERIC_CONDITION]


# ---------------------------------------------------------------------------------------------------- scoring
def _cache_key(scorer, prompt: Any, response: Any, condition: Any) -> tuple:
    """Key of a scored sequence; inputs that are identical (unconditioned model, unknown -> generic) share it."""
    spec = scorer.spec
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


def _accuracy(wins: Sequence[bool]) -> float | None:
    return sum(wins) / len(wins) if wins else None


def _mean(values) -> float | None:
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
        if auto and scorer.spec.mode != "none":
            conditions = domains
            unknown = sorted(set(domains) - set(scorer.spec.conditions))
            if unknown:
                logger.warning(
                    f"The model was not conditioned on DSP domain(s) {unknown} (it knows {scorer.spec.conditions}): "
                    "their pairs are scored with "
                    + (
                        "the generic entry."
                        if scorer.spec.mode == "embedding"
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
            results["dsp"][d] = _accuracy(domain_wins)
            results["counts"]["dsp"][d] = len(domain_wins)
            results["dsp_by_rejected"][d] = {o: _accuracy(wins_by_pair[d, o]) for o in others}
        results["dsp"]["mean"] = _mean(results["dsp"][d] for d in DSP_DOMAINS)
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
        results["general"][name] = _accuracy(wins)
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
            [_accuracy([w for w, dom in zip(row_wins, pairs["domain"], strict=True) if dom == d]) for d in DSP_DOMAINS]
        )
    return {"rows": rows, "columns": list(DSP_DOMAINS), "values": values}


def plot_heatmap(matrix: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Save `matrix` (as returned by [`heatmap`]) as an annotated heatmap image (needs matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plotting the heatmap needs matplotlib: `pip install trl-custom[plot]` (or `pip install matplotlib`)."
        ) from e
    rows, columns = matrix["rows"], matrix["columns"]
    values = [[float("nan") if v is None else v for v in row] for row in matrix["values"]]
    fig = Figure(figsize=(1.6 * len(columns) + 2.5, 0.7 * len(rows) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("evaluated domain")
    ax.set_ylabel("condition given to the model")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            text = "n/a" if v != v else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if v == v and v > 0.6 else "white")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=150)


def format_results(results: dict[str, Any]) -> str:
    """A small readable table of [`evaluate_reward_model`] results (and the heatmap, if present)."""

    def fmt(v):
        return "   n/a" if v is None else f"{v:6.3f}"

    lines = []
    if results.get("dsp"):
        counts = results["counts"]["dsp"]
        lines += [f"DSP accuracy (condition: {results.get('condition')})", f"  {'domain':<16}{'pairs':>8}  accuracy"]
        lines += [f"  {d:<16}{counts[d]:>8}  {fmt(results['dsp'][d])}" for d in DSP_DOMAINS]
        lines.append(f"  {'mean':<16}{counts['total']:>8}  {fmt(results['dsp']['mean'])}")
        by_rejected = results.get("dsp_by_rejected")
        if by_rejected:
            lines += [
                "DSP accuracy by the competing (rejected) response",
                f"  {'domain':<16}" + "".join(f"{o:>14}" for o in DSP_RESPONSE_KEYS),
            ]
            for d in DSP_DOMAINS:
                cells = [by_rejected[d].get(o) for o in DSP_RESPONSE_KEYS]
                lines.append(
                    f"  {d:<16}"
                    + "".join(f"{'-' if o == d else fmt(v):>14}" for o, v in zip(DSP_RESPONSE_KEYS, cells))
                )
    if results.get("general"):
        lines += ["General preference accuracy (no condition)", f"  {'file':<16}{'pairs':>8}  accuracy"]
        lines += [
            f"  {name:<16}{results['counts']['general'][name]:>8}  {fmt(acc)}"
            for name, acc in results["general"].items()
        ]
    matrix = results.get("heatmap")
    if matrix:
        width = max(len(c) for c in matrix["columns"]) + 2
        lines.append("Heatmap (rows: condition given to the model, columns: evaluated domain)")
        lines.append("  " + " " * 16 + "".join(f"{c:>{width}}" for c in matrix["columns"]))
        for row, values in zip(matrix["rows"], matrix["values"], strict=True):
            lines.append(f"  {row:<16}" + "".join(f"{fmt(v):>{width}}" for v in values))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- agreement metrics
def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, tied values sharing the mean of their ranks (as `scipy.stats.rankdata`)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman_correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """
    Spearman's rank correlation (Pearson correlation of average ranks, so ties are handled as in
    `scipy.stats.spearmanr`). `None` when fewer than 2 values or one side is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"spearman_correlation needs equally long inputs, got {len(x)} and {len(y)}.")
    if len(x) < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / (vx * vy) ** 0.5


def calibration_error(probabilities: Sequence[float], targets: Sequence[float]) -> float | None:
    """Mean absolute gap between predicted P(chosen) and the observed agreement; `None` for no pairs."""
    if len(probabilities) != len(targets):
        raise ValueError(f"calibration_error needs equally long inputs, got {len(probabilities)} and {len(targets)}.")
    if not probabilities:
        return None
    return sum(abs(p - t) for p, t in zip(probabilities, targets)) / len(probabilities)


# ---------------------------------------------------------------------------------------------------- CLI
def _test_size(value: str) -> float | int:
    try:
        return int(value)
    except ValueError:
        return float(value)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trl_custom.evaluate",
        description="Evaluate a (conditioned) reward model on DSP pairs and general preference files.",
    )
    parser.add_argument(
        "--model_name_or_path",
        required=True,
        help="Directory of a reward model saved by `CustomRewardTrainer.save_model` (or any sequence-classification "
        "reward model).",
    )
    parser.add_argument("--dsp_file", required=True, help="DSP query file (JSON list or JSON lines).")
    parser.add_argument(
        "--general_files",
        nargs="*",
        default=[],
        help="General preference files (helpful / harmless / webgpt), scored with no condition. Ties and comparisons "
        "with empty responses are dropped.",
    )
    parser.add_argument("--output_json", required=True, help="Where to write the results as JSON.")
    parser.add_argument("--plot", default=None, help="If set, save the condition x domain heatmap to this image file.")
    parser.add_argument(
        "--no_heatmap",
        action="store_true",
        help="Do not compute the condition x domain heatmap (computed by default; cheap thanks to score caching).",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="Sequences per forward pass.")
    parser.add_argument("--max_length", type=int, default=512, help="Longer sequences are truncated like in training.")
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
    parser.add_argument("--max_pairs", type=int, default=None, help="Use only the first N pairs of each general file.")
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    for flag, path in [("--dsp_file", args.dsp_file)] + [("--general_files", p) for p in args.general_files]:
        if not os.path.isfile(path):
            parser.error(f"{flag}: file not found: {path}")
    if not os.path.isdir(args.model_name_or_path):
        parser.error(f"--model_name_or_path: model directory not found: {args.model_name_or_path}")
    if args.plot and args.no_heatmap:
        parser.error("--plot needs the heatmap: drop --no_heatmap.")

    import torch

    from ..conditioned_rm.scoring import RewardScorer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scorer = RewardScorer.from_pretrained(
        args.model_name_or_path, device=device, max_length=args.max_length, batch_size=args.batch_size
    )
    try:
        if args.condition != AUTO_CONDITION:
            resolve_condition(scorer, args.condition)
    except ValueError as e:
        parser.error(f"--condition: {e}")

    queries = load_dsp_queries(args.dsp_file)
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
    results = evaluate_reward_model(
        scorer,
        queries,
        general_files=args.general_files,
        condition=args.condition,
        max_queries=args.max_queries,
        max_pairs=args.max_pairs,
        progress=progress,
        cache=cache,
    )
    if not args.no_heatmap:
        rows = default_heatmap_rows(scorer, args.condition)
        results["heatmap"] = heatmap(
            scorer, queries, rows, max_queries=args.max_queries, progress=progress, cache=cache
        )
    results["meta"] = {
        "model_name_or_path": args.model_name_or_path,
        "condition_mode": scorer.spec.mode,
        "conditions": scorer.spec.conditions,
        "dsp_file": args.dsp_file,
        "dsp_split": args.dsp_split,
        "test_size": args.test_size,
        "seed": args.seed,
        "n_queries": len(queries) if args.max_queries is None else min(len(queries), args.max_queries),
        "general_files": list(args.general_files),
        "max_length": args.max_length,
    }

    os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(format_results(results))
    print(f"Results written to {args.output_json}")
    if args.plot:
        title = f"{os.path.basename(os.path.normpath(args.model_name_or_path))} ({scorer.spec.mode})"
        plot_heatmap(results["heatmap"], args.plot, title=title)
        print(f"Heatmap written to {args.plot}")
    return results


if __name__ == "__main__":
    main()
