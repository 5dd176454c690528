# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The parts of `benchmarks/many_users.py` (its entry point: arguments, selection on dev, report): the population
(`population.py`), the head-side models on cached features (`head.py`), the fine-tuned MiniLM variants and the
backbone (`finetune.py`) and the timings (`timing.py`)."""

from .finetune import finetune_section, train_backbone
from .head import HEAD_VARIANTS, LEARNED, accuracy, cached_features, train_head, unseen_accuracy
from .population import STYLES, bayes_accuracy, build_population, group, split_backbone_queries
from .timing import timing_section


__all__ = [
    "HEAD_VARIANTS",
    "LEARNED",
    "STYLES",
    "accuracy",
    "bayes_accuracy",
    "build_population",
    "cached_features",
    "finetune_section",
    "group",
    "split_backbone_queries",
    "timing_section",
    "train_backbone",
    "train_head",
    "unseen_accuracy",
]
