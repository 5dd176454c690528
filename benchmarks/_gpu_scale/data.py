# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The speed sections' DSP pairs: the real ones of `--dsp_file` (gzipped on the device), or synthetic queries with the
DSP file's length distribution."""

import gzip
import os
import random
import shutil

from _shared import pairs_within

from trl_custom.data import DSP_RESPONSE_KEYS, dsp_pairs, load_dsp_queries


# Token lengths (SmolLM2 tokenizer) of the DSP dev file, percentiles 0, 5, ..., 100: 461 queries (mean 11.9 tokens)
# and their 2,304 non-empty responses (mean 142.2). The synthetic length mix samples from these.
DSP_PROMPT_TOKENS = (4, 6, 7, 8, 8, 9, 9, 10, 10, 10, 11, 12, 12, 13, 13, 14, 15, 16, 18, 20, 58)
DSP_RESPONSE_TOKENS = (1, 12, 17, 23, 37, 53, 66, 80, 93, 106, 119, 135, 152, 171, 192, 212, 233, 258, 290, 348, 634)
WORDS = "the of and to in is that for it as with was on be by this are or from at an which have not".split()


def plain_path(path, work_dir):
    """`path`, or its decompressed copy in `work_dir` if it is gzipped (the data travels gzipped to the device)."""
    if not path.endswith(".gz"):
        return path
    target = os.path.join(work_dir, os.path.basename(path)[: -len(".gz")])
    if not os.path.isfile(target):
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def synthetic_dsp_queries(n, seed):
    """DSP-format queries whose prompt and response lengths (in words ~ SmolLM2 tokens) follow the DSP file's."""
    rng = random.Random(seed)

    def length(percentiles):
        x = rng.random() * (len(percentiles) - 1)
        low = int(x)
        high = min(low + 1, len(percentiles) - 1)
        return max(1, round(percentiles[low] + (x - low) * (percentiles[high] - percentiles[low])))

    def text(n_words):
        return " ".join(rng.choice(WORDS) for _ in range(n_words))

    return [
        {
            "query": text(length(DSP_PROMPT_TOKENS)),
            "responses": {k: text(length(DSP_RESPONSE_TOKENS)) for k in DSP_RESPONSE_KEYS},
        }
        for _ in range(n)
    ]


def length_mix_pairs(args, tokenizer, needed, work_dir):
    """`needed` DSP pairs (real if `--dsp_file`, else synthetic) drawn at random, each sequence within max_length."""
    if args.dsp_file:
        source, queries = "DSP file", load_dsp_queries(plain_path(args.dsp_file, work_dir))
    else:
        source, queries = "synthetic DSP lengths", synthetic_dsp_queries(max(8, needed), args.seed)
    pairs = dsp_pairs(queries)
    keep = pairs_within(pairs, tokenizer, args.max_length, needed, args.seed)
    while len(keep) < needed:  # a small file: reuse pairs (same batches for every variant all the same)
        keep.append(keep[len(keep) % max(1, len(keep))])
    return pairs.select(keep), source


def dsp_dpo_pairs(args, tokenizer, needed, work_dir):
    """The DSP pairs with users = domains, the prompt ending on a newline (so its tokens end where it ends)."""
    pairs, source = length_mix_pairs(args, tokenizer, needed, work_dir)
    pairs = pairs.map(lambda row: {"prompt": row["prompt"].rstrip() + "\n"}).rename_column("domain", "user_id")
    return pairs, source
