# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The benchmarks' data: the development copy of the DSP files (the default of their `--data_dir` / `--dsp_file`; never
shipped, never a user-facing default, see CONTRIBUTING.md), pairs that fit a token budget, and the general files cut
into training pairs and held-out evaluation files.
"""

import os
import random

from datasets import concatenate_datasets

from trl_custom.data import load_general_pairs, write_general_pairs


DATA_DIR = "../shared/data/dsp"  # from the checkout's root: the development copy of the DSP repository's data/
GENERAL_FILES = ("helpful", "harmless", "webgpt")  # the general preference sets, besides `dsp_queries`


def dev_file(data_dir, name) -> str:
    """The development file of `name` (`dsp_queries` or one of `GENERAL_FILES`) in `data_dir`."""
    return os.path.join(data_dir, f"{name}.dev.json")


DSP_FILE = dev_file(DATA_DIR, "dsp_queries")


def pairs_within(pairs, tokenizer, max_length, needed, seed) -> list[int]:
    """
    Up to `needed` indices of `pairs` drawn at random (`seed`) whose chosen and rejected sequences (prompt +
    response) both fit `max_length` tokens, so that no variant of a speed run truncates or drops any.
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    keep = []
    for index in order:
        row = pairs[index]
        if all(len(tokenizer(row["prompt"] + row[c]).input_ids) <= max_length for c in ("chosen", "rejected")):
            keep.append(index)
        if len(keep) == needed:
            break
    return keep


def general_splits(paths, eval_pairs, train_pairs, eval_dir, seed):
    """
    Each general file of `paths` shuffled (`seed`): its first `eval_pairs` pairs written to `eval_dir/<name>.json`
    for evaluation (`<name>`: the file name up to its first dot), the next `train_pairs` kept for training. Returns
    the training pairs of all files, shuffled, and the evaluation files.
    """
    parts, eval_files = [], []
    for path in paths:
        pairs = load_general_pairs(path, skip_empty=True).shuffle(seed=seed)
        eval_file = os.path.join(eval_dir, f"{os.path.basename(path).split('.')[0]}.json")
        held_out = min(len(pairs), eval_pairs)
        write_general_pairs(pairs.select(range(held_out)), eval_file)
        eval_files.append(eval_file)
        parts.append(pairs.select(range(held_out, min(len(pairs), held_out + train_pairs))))
    return concatenate_datasets(parts).shuffle(seed=seed), eval_files
