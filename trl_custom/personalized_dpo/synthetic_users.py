# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Synthetic users with conflicting preferences (P-RLHF's first experiment): short vs long answers.

From any prompt set with several real responses per prompt (DSP query files work), build preference pairs of two
responses of clearly different lengths, and users of three groups:

- `short`: prefer the shorter response;
- `long`: prefer the longer response;
- `mixed`: no length preference (a fixed coin per pair), the neutral group.

The same pair can appear for users of different groups with opposite labels, so a single (vanilla) policy cannot fit
the short and long users at once, while a personalized one can.

    trl-custom synthetic-users --dsp_file dsp_queries.json --output users.jsonl --users_per_group 4
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from datasets import Dataset


GROUPS = ("short", "long", "mixed")


def length_pairs(items: Sequence[dict], min_ratio: float = 1.5, max_chars: int | None = None) -> list[dict]:
    """Pairs `(prompt, shorter, longer)` of non-empty responses of one prompt whose lengths differ by `min_ratio`."""
    pairs = []
    for item in items:
        # Ties in length are broken by the text, not by set order (which changes with PYTHONHASHSEED, so that
        # processes of one multi-process run would otherwise build different datasets).
        responses = sorted(
            {r.strip() for r in item["responses"].values() if r and r.strip()}, key=lambda r: (len(r), r)
        )
        if max_chars:
            responses = [r[:max_chars] for r in responses]
        for i, short in enumerate(responses):
            for long in responses[i + 1 :]:
                if len(long) >= min_ratio * len(short):
                    pairs.append({"prompt": item["query"], "short": short, "long": long})
    return pairs


def build_length_preference_dataset(
    items: Sequence[dict],
    users_per_group: int = 4,
    pairs_per_user: int = 40,
    groups: Sequence[str] = GROUPS,
    min_ratio: float = 1.5,
    max_chars: int | None = None,
    seed: int = 0,
    conversational: bool = False,
) -> Dataset:
    """
    Deterministic P-DPO dataset: `prompt, chosen, rejected, user_id, group` rows, `pairs_per_user` per user.

    User ids are `"<group>-<i>"`. Each user draws its pairs from the same pool, so groups see overlapping prompts.
    With `conversational=True` the rows are chat messages (user prompt, assistant responses), for instruct models.
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"Unknown groups {sorted(unknown)}; choose from {GROUPS}.")
    pool = length_pairs(items, min_ratio=min_ratio, max_chars=max_chars)
    if not pool:
        raise ValueError(f"No response pairs with a length ratio >= {min_ratio}: lower `min_ratio`.")
    rng = random.Random(seed)
    rows = []
    for group in groups:
        for u in range(users_per_group):
            for pair in rng.sample(pool, min(pairs_per_user, len(pool))):
                prefers_short = group == "short" or (group == "mixed" and rng.random() < 0.5)
                chosen, rejected = (pair["short"], pair["long"]) if prefers_short else (pair["long"], pair["short"])
                # A newline ends the plain-text prompt, so that it tokenizes as a prefix of prompt + response.
                row = {"prompt": pair["prompt"].rstrip() + "\n", "chosen": chosen, "rejected": rejected}
                if conversational:
                    row = {
                        "prompt": [{"role": "user", "content": pair["prompt"]}],
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                    }
                rows.append({**row, "user_id": f"{group}-{u}", "group": group})
    return Dataset.from_list(rows)


def build_length_prompt_dataset(
    items: Sequence[dict],
    users_per_group: int = 4,
    prompts_per_user: int = 16,
    groups: Sequence[str] = ("short", "long"),
    seed: int = 0,
) -> Dataset:
    """
    Prompts for online RL (GRPO, RLOO) with the same synthetic users: `prompt, user_id, group` rows,
    `prompts_per_user` prompts drawn per user from the queries of `items`, rewarded by [`length_preference_reward`].
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"Unknown groups {sorted(unknown)}; choose from {GROUPS}.")
    queries = sorted({item["query"].strip() for item in items if item.get("query") and item["query"].strip()})
    if not queries:
        raise ValueError("No queries to draw prompts from.")
    rng = random.Random(seed)
    rows = []
    for group in groups:
        for u in range(users_per_group):
            for query in rng.sample(queries, min(prompts_per_user, len(queries))):
                rows.append({"prompt": query + "\n", "user_id": f"{group}-{u}", "group": group})
    return Dataset.from_list(rows)


def length_preference_reward(completion_ids, group, **kwargs) -> list[float]:
    """
    The synthetic users' reward for online RL: the completion's length in tokens / 100, positive for `long` users,
    negative for `short` ones, 0 for `mixed` (no length preference). Reads the dataset's `group` column (as TRL's
    online trainers pass every column to reward functions).
    """
    sign = {"short": -1.0, "long": 1.0, "mixed": 0.0}
    unknown = sorted({g for g in group if g not in sign})
    if unknown:
        raise ValueError(f"length_preference_reward: unknown group(s) {unknown}; the groups are {sorted(sign)}.")
    return [sign[g] * len(ids) / 100 for ids, g in zip(completion_ids, group, strict=True)]
