# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom fit-condition`: add a condition (domain, user) to a trained embedding-mode reward model from a
few preference pairs ([`fit_new_condition`]) and save the adapted model.

```bash
trl-custom fit-condition --model_name_or_path outputs/dsp-rm --condition literature \\
    --pairs_file literature_pairs.jsonl --max_pairs 16 --output_dir outputs/dsp-rm-literature
```

`--pairs_file`: `.json`/`.jsonl` rows with `chosen`, `rejected` and optionally `prompt` (all of the new condition),
or a general `{text: [a, b], score: [sa, sb]}` file. A YAML with the same keys works with `--config`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..conditioned_rm.adaptation import fit_new_condition
from ..conditioned_rm.scoring import RewardScorer
from ..downstream.export import save_reward_model
from ..margin.agreement import load_pairs_file
from .trl_parser import StrictTrlParser


@dataclass
class FitConditionArguments:
    """
    Arguments of `trl-custom fit-condition` (see [`fit_new_condition`] for the fitting ones).

    Args:
        model_name_or_path (`str`): Folder of an embedding-mode reward model (`trainer.save_model`, a `checkpoint-N`,
            or [`save_reward_model`]).
        condition (`str`): Name of the new condition.
        pairs_file (`str`): Its preference pairs.
        output_dir (`str`): Where to save the adapted model (its record, `trl_custom.json`, and soft tokens extended).
        max_pairs (`int` or `None`): Use only the first pairs of the file (`k`).
        num_epochs, learning_rate, batch_size, init_from, seed: As in [`fit_new_condition`].
        max_length (`int` or `None`): Longer sequences are cut as in scoring; `None`: the training `max_length`
            saved with the model.
        device (`str` or `None`): Where to fit (default: where the model loads).
    """

    model_name_or_path: str = field(metadata={"help": "Embedding-mode reward model folder."})
    condition: str = field(metadata={"help": "Name of the new condition."})
    pairs_file: str = field(metadata={"help": "Its pairs: .json/.jsonl rows with chosen, rejected[, prompt]."})
    output_dir: str = field(metadata={"help": "Where to save the adapted model."})
    max_pairs: int | None = field(default=None, metadata={"help": "Use only the first pairs (k)."})
    num_epochs: int = field(default=10, metadata={"help": "Passes over the pairs."})
    learning_rate: float = field(default=1e-2, metadata={"help": "Adam learning rate of the new row."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per step."})
    init_from: str | None = field(default=None, metadata={"help": "Known condition to start from (default: generic)."})
    seed: int = field(default=0, metadata={"help": "Seed of the pair order."})
    max_length: int | None = field(
        default=None,
        metadata={"help": "Max tokens per sequence (default: the training max_length saved with the model)."},
    )
    device: str | None = field(default=None, metadata={"help": "Device to fit on."})

    def __post_init__(self):
        if not os.path.isdir(self.model_name_or_path):
            raise FileNotFoundError(f"--model_name_or_path: model folder not found: {self.model_name_or_path}")
        if not os.path.isfile(self.pairs_file):
            raise FileNotFoundError(f"--pairs_file: file not found: {self.pairs_file}")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    (args,) = StrictTrlParser((FitConditionArguments,), prog=prog).parse_args_and_config(args=argv)
    pairs = load_pairs_file(args.pairs_file, max_pairs=args.max_pairs)
    scorer = RewardScorer.from_pretrained(args.model_name_or_path, device=args.device, max_length=args.max_length)
    index = fit_new_condition(
        scorer,
        args.condition,
        pairs,
        num_epochs=args.num_epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        init_from=args.init_from,
        seed=args.seed,
        progress=True,
    )
    metrics = {"fitted_condition": args.condition, "fit_pairs": len(pairs), "condition_id": index}
    save_reward_model(
        scorer.model,
        scorer.tokenizer,
        args.output_dir,
        model_name=os.path.basename(os.path.normpath(args.output_dir)),
        training_data=f"{args.model_name_or_path} + {len(pairs)} pairs of {args.condition!r} from {args.pairs_file}",
        metrics=metrics,
    )
    with open(os.path.join(args.output_dir, "fit_condition.json"), "w", encoding="utf-8") as f:
        json.dump({**asdict(args), **metrics}, f, indent=2)
    where = f"row {index}" if index else "the generic entry (no pairs)"
    print(f"Condition {args.condition!r} -> {where}; model saved to {args.output_dir}.")
    return index


if __name__ == "__main__":
    main()
