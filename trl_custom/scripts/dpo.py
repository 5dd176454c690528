# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Data arguments and loading of the P-DPO recipe (`recipes/dpo.py`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from datasets import Dataset, load_dataset

from ..data.demo import make_demo_dsp_queries
from ..data.preferences import load_dsp_queries
from ..personalized_dpo.synthetic_users import build_length_preference_dataset


@dataclass
class DPOScriptArguments:
    """
    Data arguments of the P-DPO recipe.

    Args:
        dataset_file (`str` or `None`): JSON/JSON-lines file of `{prompt, chosen, rejected, user_id[, group]}` rows.
        synthetic_dsp_file (`str` or `None`): Instead, build the synthetic short-vs-long users from this DSP query
            file (`"demo"`: the built-in demo queries), see `trl_custom.synthetic_users`.
        users_per_group (`int`): Synthetic users per group (short, long, mixed).
        pairs_per_user (`int`): Synthetic pairs per user.
        max_chars (`int` or `None`): Cut synthetic responses to this many characters (CPU-sized runs).
        test_size (`float`): Fraction of rows held out for evaluation.
    """

    dataset_file: str | None = field(default=None, metadata={"help": "JSON(-lines) preference file with user_id."})
    synthetic_dsp_file: str | None = field(
        default=None, metadata={"help": "DSP file (or 'demo') for synthetic users."}
    )
    users_per_group: int = field(default=2, metadata={"help": "Synthetic users per group."})
    pairs_per_user: int = field(default=32, metadata={"help": "Synthetic pairs per user."})
    max_chars: int | None = field(default=300, metadata={"help": "Cut synthetic responses to this many characters."})
    test_size: float = field(default=0.2, metadata={"help": "Fraction of rows held out for evaluation."})

    def __post_init__(self):
        if (self.dataset_file is None) == (self.synthetic_dsp_file is None):
            raise ValueError("Give exactly one of --dataset_file FILE or --synthetic_dsp_file FILE (or 'demo').")
        for path in (self.dataset_file, self.synthetic_dsp_file):
            if path not in (None, "demo") and not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Data file not found: {path}. Fix the path in the YAML or on the command line."
                )


def build_dpo_data(args: DPOScriptArguments, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Train and held-out split of the P-DPO data."""
    if args.dataset_file:
        dataset = load_dataset("json", data_files=args.dataset_file, split="train")
    else:
        items = (
            make_demo_dsp_queries() if args.synthetic_dsp_file == "demo" else load_dsp_queries(args.synthetic_dsp_file)
        )
        dataset = build_length_preference_dataset(
            items, args.users_per_group, args.pairs_per_user, max_chars=args.max_chars, seed=seed
        )
    split = dataset.train_test_split(test_size=args.test_size, seed=seed)
    return split["train"], split["test"]
