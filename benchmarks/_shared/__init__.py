# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
What the benchmark scripts share (`from _shared import ...`: a script run as `python benchmarks/<name>.py` has
`benchmarks/` on its `sys.path`): the device and timing helpers (`device.py`, `timing.py`), model shapes and builders
(`models.py`), trainer arguments, variant builders and saved-model reuse (`training.py`), the development data and
its splits (`data.py`), results files, figures and mean ± std over seeds (`output.py`). A script holds only what
it compares: its arguments, its variants (as data: config overrides) and its tables. No script imports another
script, nor `trl_custom.scripts` (the command lines' code): `tests/test_benchmarks.py` checks both.
"""

from .data import (
    DATA_DIR,
    DSP_FILE,
    GENERAL_FILES,
    dev_file,
    general_splits,
    pairs_within,
)
from .device import DEVICE, DTYPE, ON_GPU, allocated, attention_implementation, environment, gib, sync
from .models import SHAPES, build_random_model, llama_config, load_tokenizer, lora_config
from .output import figure_or_none, mean_std, save_results
from .timing import Stepper, add_ratios, first_batch, median_step_seconds, run_interleaved
from .training import (
    SETUP_FILE,
    dpo_run_args,
    dpo_trainer,
    load_scorer,
    record_setup,
    reward_trainer,
    run_args,
    same_setup,
    train_reward_model,
)


__all__ = [
    "DATA_DIR",
    "DEVICE",
    "DSP_FILE",
    "DTYPE",
    "GENERAL_FILES",
    "ON_GPU",
    "SETUP_FILE",
    "SHAPES",
    "Stepper",
    "add_ratios",
    "allocated",
    "attention_implementation",
    "build_random_model",
    "dev_file",
    "dpo_run_args",
    "dpo_trainer",
    "environment",
    "figure_or_none",
    "first_batch",
    "general_splits",
    "gib",
    "llama_config",
    "load_scorer",
    "load_tokenizer",
    "lora_config",
    "mean_std",
    "median_step_seconds",
    "pairs_within",
    "record_setup",
    "reward_trainer",
    "run_args",
    "run_interleaved",
    "same_setup",
    "save_results",
    "sync",
    "train_reward_model",
]
