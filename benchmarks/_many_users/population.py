# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The many-user population of `benchmarks/many_users.py`, built from the real DSP responses: users with sparse tastes
over the five response styles, Bradley-Terry labels, and the train / dev / test split of the queries."""

import math
import random
import statistics

from trl_custom.data import DSP_RESPONSE_KEYS


STYLES = DSP_RESPONSE_KEYS


def sparse_taste(rng: random.Random, args) -> list[float]:
    """A Dirichlet(concentration x style_prior) draw: small concentrations give a few dominant styles."""
    prior = [p / sum(args.style_prior) for p in args.style_prior]
    draws = [rng.gammavariate(max(args.concentration * p, 1e-3), 1.0) for p in prior]
    total = sum(draws) or 1.0
    return [d / total for d in draws]


def preference(theta: list[float], a: int, b: int, temperature: float) -> float:
    """P(style a's response beats style b's) for a user of taste `theta` (Bradley-Terry)."""
    return 1.0 / (1.0 + math.exp(-(theta[a] - theta[b]) / temperature))


def draw_pairs(rng, theta, queries: list[int], n: int, temperature: float) -> list[tuple[int, int, int, float]]:
    """`n` labelled pairs `(query, chosen style, rejected style, P(label))` on `queries`."""
    pairs = []
    for _ in range(n):
        q = rng.choice(queries)
        a, b = rng.sample(range(len(STYLES)), 2)
        p = preference(theta, a, b, temperature)
        pairs.append((q, a, b, p) if rng.random() < p else (q, b, a, 1.0 - p))
    return pairs


def build_population(pool: list[int], args, seed: int) -> dict:
    """Users with tastes and labelled pairs on the queries of `pool` split train / dev / test (see many_users.py's
    docstring)."""
    rng = random.Random(seed)
    order = list(pool)
    rng.shuffle(order)
    cut1 = round(args.query_split[0] * len(order))
    cut2 = cut1 + round(args.query_split[1] * len(order))
    split = {"train": order[:cut1], "dev": order[cut1:cut2], "test": order[cut2:]}
    users = []
    for group, count in (("seen", args.seen_users), ("dev", args.dev_users), ("test", args.test_users)):
        for i in range(count):
            theta = sparse_taste(rng, args)
            user = {"id": f"{group}-{i}", "group": group, "theta": theta}
            t = args.temperature
            if group == "seen":
                n = rng.randint(args.min_pairs, args.max_pairs)
                user["train"] = draw_pairs(rng, theta, split["train"], n, t)
                user["dev"] = draw_pairs(rng, theta, split["dev"], args.dev_pairs, t)
                user["test"] = draw_pairs(rng, theta, split["test"], args.test_pairs, t)
            else:
                user["shots"] = draw_pairs(rng, theta, split["train"], args.shots, t)
                user["eval"] = draw_pairs(rng, theta, split["dev" if group == "dev" else "test"], args.test_pairs, t)
            users.append(user)
    return {"split": split, "users": users}


def group(population: dict, name: str) -> list[dict]:
    """The users of `population` in group `name` (`seen`, `dev` or `test`)."""
    return [u for u in population["users"] if u["group"] == name]


def split_backbone_queries(num_queries: int, args) -> tuple[list[int], list[int]]:
    """Queries reserved for the backbone (`--backbone_fraction`, fixed shuffle) and the users' pool (the rest)."""
    order = list(range(num_queries))
    random.Random(args.backbone_seed).shuffle(order)
    cut = round(args.backbone_fraction * num_queries)
    return sorted(order[:cut]), sorted(order[cut:])


def bayes_accuracy(pairs) -> float:
    """Expected accuracy of predicting each pair's likelier label (the labels' own probabilities)."""
    return statistics.mean(max(p, 1 - p) for q, a, b, p in pairs) if pairs else float("nan")
