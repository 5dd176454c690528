# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of reward models: per-domain DSP accuracy, general-set accuracy, the condition x domain heatmap."""

from .accuracy import evaluate_reward_model, heatmap
from .report import format_results, plot_heatmap


__all__ = [
    "evaluate_reward_model",
    "format_results",
    "heatmap",
    "plot_heatmap",
]
