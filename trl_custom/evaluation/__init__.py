# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of reward models: per-domain DSP accuracy, general-set accuracy, the condition x domain heatmap, any
preference dataset with a condition column (pairs.py), plots and tables (report.py); of personalized policies: win
rates over the base policy under a judge reward model, per condition and as a matrix (policy.py)."""

from .accuracy import evaluate_reward_model, heatmap
from .pairs import evaluate_pairs
from .policy import evaluate_policy, judge_generations, plot_policy_matrix, policy_generations
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
    "evaluate_policy",
    "evaluate_reward_model",
    "format_results",
    "heatmap",
    "judge_generations",
    "new_figure",
    "plot_accuracy_bars",
    "plot_heatmap",
    "plot_policy_matrix",
    "plot_training_curves",
    "policy_generations",
    "save_figure",
]
