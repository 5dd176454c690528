# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Margin-regularized reward models ("Beyond the Binary"): synthetic judges estimate how much annotators would disagree
on a pair, and the disagreement becomes the pair's `margin` (the `margin` column of TRL's and `CustomRewardTrainer`'s
loss; `margin_scale` scales it).
"""

from .agreement import augment_pairs, load_pairs_file, write_pairs_file
from .augment_config import AugmentConfig
from .judges import JudgmentCache, LMJudge, PairJudge, RewardModelJudge, judge_pairs, reward_model_judges
from .metrics import calibration_error, spearman_correlation
from .similarity import MeanPooledEmbedder


__all__ = [
    "AugmentConfig",
    "JudgmentCache",
    "LMJudge",
    "MeanPooledEmbedder",
    "PairJudge",
    "RewardModelJudge",
    "augment_pairs",
    "calibration_error",
    "judge_pairs",
    "load_pairs_file",
    "reward_model_judges",
    "spearman_correlation",
    "write_pairs_file",
]
