# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Margin-regularized reward models ("Beyond the Binary"): synthetic judges estimate how much annotators would disagree
on a pair, and the disagreement becomes the pair's `margin` (trained with `CustomRewardTrainer`'s `margin_coef`).
"""
