# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""From scored candidates to preference pairs: empty and (near-)duplicate candidates dropped, the pair strategies,
ties and small gaps dropped — every drop counted — and the length statistics of the pairs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..data.preferences import is_empty_response
from ..margin.metrics import spearman_correlation
from ..margin.similarity import response_text


COUNT_KEYS = ("candidates", "empty", "exact_duplicates", "near_duplicates", "scored", "ties", "below_margin", "pairs")


def words(text: str) -> list[str]:
    """Lower-cased words of a text (letters and digits), for near-duplicate detection."""
    return re.findall(r"\w+", text.lower())


def bigrams(text: str) -> set[tuple[str, ...]]:
    """The word bigrams of a text (its single word, or nothing, when it has fewer than two)."""
    tokens = words(text)
    if len(tokens) < 2:
        return {tuple(tokens)} if tokens else set()
    return set(zip(tokens, tokens[1:]))


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two sets (two empty sets: 1.0)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def filter_candidates(candidates: Sequence[Any], near_duplicate_threshold: float) -> tuple[list[int], dict[str, int]]:
    """
    The candidates worth scoring: empty ones dropped, exact duplicates (same text once whitespace is collapsed) and
    near duplicates (word-bigram Jaccard similarity to a kept one >= `near_duplicate_threshold`) dropped after their
    first occurrence.

    Returns:
        `(kept indices, counts)`: `counts` has `candidates`, `empty`, `exact_duplicates` and `near_duplicates`.
    """
    counts = {"candidates": len(candidates), "empty": 0, "exact_duplicates": 0, "near_duplicates": 0}
    kept: list[int] = []
    seen: set[str] = set()
    shingles: list[set] = []
    for index, candidate in enumerate(candidates):
        if is_empty_response(candidate):
            counts["empty"] += 1
            continue
        text = " ".join(response_text(candidate).split())
        if text in seen:
            counts["exact_duplicates"] += 1
            continue
        grams = bigrams(text)
        if near_duplicate_threshold < 1.0 and any(jaccard(grams, g) >= near_duplicate_threshold for g in shingles):
            counts["near_duplicates"] += 1
            continue
        seen.add(text)
        shingles.append(grams)
        kept.append(index)
    return kept, counts


def build_pairs(
    rewards: Sequence[float], strategy: str, min_margin: float = 0.0, tie_tolerance: float = 1e-6
) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """
    Preference pairs `(chosen index, rejected index)` among candidates with `rewards` (one condition).

    - `"best_vs_worst"`: the best against the worst (the first of equal rewards), if their gap is a win;
    - `"all_pairs"`: every pair whose gap is a win, the higher reward chosen.

    A gap up to `tie_tolerance` is a tie; a gap above it but not above `min_margin` is `below_margin`; both are
    dropped and counted (for `"best_vs_worst"`, at most one per call).

    Returns:
        `(pairs, counts)`: `counts` has `ties`, `below_margin` and `pairs`.
    """
    counts = {"ties": 0, "below_margin": 0, "pairs": 0}

    def outcome(gap: float) -> str:
        if gap <= tie_tolerance:
            return "ties"
        return "below_margin" if gap <= min_margin else "pairs"

    candidates: list[tuple[int, int]] = []
    if strategy == "best_vs_worst":
        if len(rewards) >= 2:
            best = max(range(len(rewards)), key=lambda i: rewards[i])
            worst = min(range(len(rewards)), key=lambda i: rewards[i])
            candidates = [(best, worst)]
    elif strategy == "all_pairs":
        candidates = [
            (i, j) if rewards[i] >= rewards[j] else (j, i)
            for i in range(len(rewards))
            for j in range(i + 1, len(rewards))
        ]
    else:
        raise ValueError(f"Unknown pair strategy {strategy!r}.")
    pairs = []
    for chosen, rejected in candidates:
        kind = outcome(rewards[chosen] - rewards[rejected])
        counts[kind] += 1
        if kind == "pairs":
            pairs.append((chosen, rejected))
    return pairs, counts


def length_statistics(rows: Sequence[dict], condition_column: str) -> dict[str, Any]:
    """
    How the written pairs go with length (in words), overall and per condition, so that a reward model's length bias
    shows:

    - `reward_gap_vs_length_gap`: Spearman correlation of the reward gap with the length gap, each pair counted in both
      orders (+1: the longer response always won, by more the longer it was; 0: no link);
    - `chosen_longer`: the fraction of pairs whose chosen response is longer (ties in length count half);
    - `mean_length_gap`: the mean of chosen minus rejected length.
    """

    def summary(group: Sequence[dict]) -> dict[str, Any]:
        gaps = [row["margin"] for row in group]
        lengths = [
            len(response_text(row["chosen"]).split()) - len(response_text(row["rejected"]).split()) for row in group
        ]
        correlation = spearman_correlation(gaps + [-g for g in gaps], lengths + [-d for d in lengths])
        longer = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in lengths]
        return {
            "pairs": len(group),
            "reward_gap_vs_length_gap": correlation,
            "chosen_longer": sum(longer) / len(longer) if longer else None,
            "mean_length_gap": sum(lengths) / len(lengths) if lengths else None,
        }

    by_condition: dict[str, list[dict]] = {}
    for row in rows:
        by_condition.setdefault(str(row[condition_column]), []).append(row)
    return {
        "unit": "words",
        "all": summary(rows),
        "per_condition": {name: summary(group) for name, group in sorted(by_condition.items())},
    }


def reward_length_correlation(scored: Sequence[Sequence[Any]]) -> dict[str, float | None]:
    """Spearman correlation of reward with length (words) over every scored candidate, per condition, from
    `[condition, length, reward]` triples."""
    by_condition: dict[str, tuple[list, list]] = {}
    for condition, length, reward in scored:
        lengths, rewards = by_condition.setdefault(str(condition), ([], []))
        lengths.append(length)
        rewards.append(reward)
    return {name: spearman_correlation(r, lengths) for name, (lengths, r) in sorted(by_condition.items())}
