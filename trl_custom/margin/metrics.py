# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""How well a reward model's P(chosen) follows the judges' agreement: rank correlation and calibration error."""

from __future__ import annotations

from collections.abc import Sequence


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, tied values sharing the mean of their ranks (as `scipy.stats.rankdata`)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman_correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """
    Spearman's rank correlation (Pearson correlation of average ranks, so ties are handled as in
    `scipy.stats.spearmanr`). `None` when fewer than 2 values or one side is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"spearman_correlation needs equally long inputs, got {len(x)} and {len(y)}.")
    if len(x) < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / (vx * vy) ** 0.5


def calibration_error(probabilities: Sequence[float], targets: Sequence[float]) -> float | None:
    """Mean absolute gap between predicted P(chosen) and the observed agreement; `None` for no pairs."""
    if len(probabilities) != len(targets):
        raise ValueError(f"calibration_error needs equally long inputs, got {len(probabilities)} and {len(targets)}.")
    if not probabilities:
        return None
    return sum(abs(p - t) for p, t in zip(probabilities, targets)) / len(probabilities)
