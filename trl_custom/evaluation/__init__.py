# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Evaluation of reward models: per-domain DSP accuracy, general-set accuracy, the condition x domain heatmap."""
