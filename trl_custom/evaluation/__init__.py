# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of reward models: per-domain DSP accuracy, general-set accuracy, the condition x domain heatmap, any
preference dataset with a condition column (pairs.py), plots and tables (report.py)."""

from .accuracy import evaluate_reward_model, heatmap
from .pairs import evaluate_pairs
from .report import (
    format_results,
    new_figure,
    plot_accuracy_bars,
    plot_heatmap,
    plot_training_curves,
    save_figure,
)


__all__ = [
    "evaluate_pairs",
    "evaluate_reward_model",
    "format_results",
    "heatmap",
    "new_figure",
    "plot_accuracy_bars",
    "plot_heatmap",
    "plot_training_curves",
    "save_figure",
]
