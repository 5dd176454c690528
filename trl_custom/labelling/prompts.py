# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The prompts of `trl-custom label-pairs` and `trl-custom evaluate-policy` ([`PromptArguments`]): a dataset's prompt
column or a DSP query file's queries, a slice of them."""

from __future__ import annotations

from typing import Any

from ..data.preferences import load_dsp_queries
from ..data.sources import load_dataset_name, resolve_data_file
from .label_config import PromptArguments


def load_prompts(args: PromptArguments, keep_columns: list[str] | None = None) -> list[dict[str, Any]]:
    """
    Rows `{args.prompt_column: prompt, ...}` of the prompts `args` names, after `skip_prompts`, at most `max_prompts`
    (a DSP file's rows hold its `query` under `args.prompt_column`). `keep_columns`: columns of the dataset kept
    beside the prompt (e.g. the candidates); the others are not read.

    Raises:
        `ValueError`: The dataset has no such split or column (naming the ones it has), or no prompt is left.
    """
    if args.dsp_file:
        rows = [
            {args.prompt_column: item["query"]}
            for item in load_dsp_queries(resolve_data_file(args.dsp_file, "--dsp_file"))
        ]
        source = args.dsp_file
    else:
        dataset = load_dataset_name(args.dataset_name)
        if args.dataset_split not in dataset:
            raise ValueError(
                f"--dataset_split {args.dataset_split!r}: {args.dataset_name} has no such split (splits: "
                f"{list(dataset)})."
            )
        dataset = dataset[args.dataset_split]
        columns = [args.prompt_column] + list(keep_columns or [])
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            flag = "--prompt_column" if args.prompt_column in missing else "--candidates_column"
            raise ValueError(
                f"{args.dataset_name} ({args.dataset_split}) has no column {missing[0]!r} (columns: "
                f"{dataset.column_names}): set {flag}."
            )
        rows = [dict(row) for row in dataset.select_columns(columns)]
        source = args.dataset_name
    end = None if args.max_prompts is None else args.skip_prompts + args.max_prompts
    rows = rows[args.skip_prompts : end]
    if not rows:
        raise ValueError(f"No prompts left in {source} after --skip_prompts {args.skip_prompts}.")
    return rows
