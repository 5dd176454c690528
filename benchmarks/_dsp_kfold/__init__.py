# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The parts of `benchmarks/dsp_kfold.py` (its entry point: data, folds, training and evaluation of a cell): the
variants (`variants.py`), the stock-TRL by-hand baseline (`by_hand.py`) and the results (`report.py`)."""

from .by_hand import ByHandScorer, by_hand_text, train_by_hand
from .report import COLUMNS, WEAK_CELLS, load_results, markdown, plot, summarize
from .variants import VARIANTS, Variant, VariantUnavailable, config_kwargs


__all__ = [
    "COLUMNS",
    "VARIANTS",
    "WEAK_CELLS",
    "ByHandScorer",
    "Variant",
    "VariantUnavailable",
    "by_hand_text",
    "config_kwargs",
    "load_results",
    "markdown",
    "plot",
    "summarize",
    "train_by_hand",
]
