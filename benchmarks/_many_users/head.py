# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The head-side models of `benchmarks/many_users.py`: the frozen reward model's head features, computed once and
cached, and the reward head trained on them with the user model at `condition_placement="reward_head"` (the
trainer's own hook); accuracy, and the cold-start fit of an unseen user (`fit_new_row`, everything else frozen)."""

import hashlib
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from trl_custom.soft_tokens import (
    SoftTokenConfig,
    attach_soft_tokens,
    fit_new_row,
    head_features,
    new_soft_tokens,
    reward_head_forward,
)

from .population import STYLES, group


HEAD_VARIANTS = ("generic", "table", "lowrank", "prototype", "oracle")
LEARNED = ("table", "lowrank", "prototype")


def cached_features(queries: list[dict], model_path: str, pooling: str, args) -> torch.Tensor:
    """`(queries x 5, width)` features the frozen reward model's head reads for each (query, style response),
    computed once with `head_features` through `RewardScorer`'s encoding (`keep_start` truncation at `max_length`),
    cached in `--output_dir`."""
    key = hashlib.sha256(json.dumps([model_path, pooling, args.max_length, queries]).encode()).hexdigest()[:12]
    path = os.path.join(args.output_dir, f"features-{key}.pt")
    if os.path.isfile(path):
        return torch.load(path)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trl_custom import RewardScorer
    from trl_custom.conditioned_rm.conditioning import reward_forward
    from trl_custom.conditioned_rm.reward_head import apply_pooling
    from trl_custom.record import ModelRecord

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, dtype=torch.float32).eval()
    model.requires_grad_(False)
    ModelRecord(max_length=args.max_length, truncation_mode="keep_start", pooling=pooling).attach(model)
    apply_pooling(model, pooling)
    scorer = RewardScorer(model, tokenizer, batch_size=32)
    sequences = [scorer.encode(q["query"], q["responses"][s]) for q in queries for s in STYLES]
    start, features = time.perf_counter(), []
    for i in range(0, len(sequences), scorer.batch_size):
        ids, mask = scorer.collate(sequences[i : i + scorer.batch_size])
        _, feats = head_features(model, lambda: reward_forward(model, ids, mask)["rewards"], ids.shape[0])  # noqa: B023
        features.append(feats)
    features = torch.cat(features)
    print(f"features of {len(sequences)} sequences in {time.perf_counter() - start:.0f}s", flush=True)
    torch.save(features, path)
    return features


class CachedRewardHead(nn.Module):
    """The reward head of a frozen reward model on its cached features: `classifier(f) (+ u_user . f)`, the user
    model being `trl_custom.soft_tokens.SoftTokens` at `placement="reward_head"`, through the trainer's own hook."""

    def __init__(self, width: int, variant: str, num_users: int, setting: dict, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.classifier = nn.Linear(width, 1)
        self.variant = variant
        if variant == "generic":
            return
        kind = "lowrank" if variant == "oracle" else variant
        config = SoftTokenConfig(
            kind=kind,
            num_tokens=1,
            placement="reward_head",
            dim=setting.get("rank", len(STYLES)) if kind == "lowrank" else setting.get("prototypes", 4),
            num_prototypes=setting.get("prototypes", 4),
            num_features=len(STYLES) if variant == "oracle" else 0,
        )
        soft = attach_soft_tokens(self, new_soft_tokens(self, config, num_users))
        if variant == "oracle":  # every user is its taste through the learned map: the per-user rows stay zero
            soft.vectors.data.zero_()
            soft.vectors.requires_grad_(False)

    def rewards(self, features: torch.Tensor, user_ids: torch.Tensor | None, tastes: torch.Tensor | None = None):
        if self.variant == "generic" or user_ids is None:
            return self.classifier(features).squeeze(-1)
        vectors = self.soft_tokens(user_ids, tastes if self.variant == "oracle" else None)
        with reward_head_forward(self, vectors):
            return self.classifier(features).squeeze(-1)


def pair_tensors(pairs, user_index: dict):
    """Chosen / rejected sequence rows, user ids and tastes of a list of `(user, pair)`."""
    chosen = torch.tensor([q * len(STYLES) + a for _, (q, a, b, p) in pairs])
    rejected = torch.tensor([q * len(STYLES) + b for _, (q, a, b, p) in pairs])
    ids = torch.tensor([user_index.get(u["id"], 0) for u, _ in pairs])
    tastes = torch.tensor([u["theta"] for u, _ in pairs])
    return chosen, rejected, ids, tastes


def accuracy(model: CachedRewardHead, features, pairs, user_index, ids=None) -> float:
    """Accuracy on `(user, pair)` items (ties count as errors); `ids` overrides the users' ids."""
    if not pairs:
        return float("nan")
    chosen, rejected, user_ids, tastes = pair_tensors(pairs, user_index)
    user_ids = user_ids if ids is None else ids
    with torch.no_grad():
        margin = model.rewards(features[chosen], user_ids, tastes) - model.rewards(
            features[rejected], user_ids, tastes
        )
    return float((margin > 0).float().mean())


def train_head(features, population, variant: str, setting: dict, args, seed: int, users=None):
    """A head-side variant trained on the seen users' training pairs (of `users`, default all seen users)."""
    seen = users or group(population, "seen")
    user_index = {u["id"]: i + 1 for i, u in enumerate(seen)}
    model = CachedRewardHead(features.shape[1], variant, len(seen), setting, seed)
    groups = [{"params": model.classifier.parameters(), "lr": args.head_learning_rate}]
    if variant != "generic":
        trainable = [p for p in model.soft_tokens.parameters() if p.requires_grad]
        groups.append({"params": trainable, "lr": setting["user_lr"]})
    optimizer = torch.optim.Adam(groups)
    items = [(u, pair) for u in seen for pair in u["train"]]
    chosen, rejected, ids, tastes = pair_tensors(items, user_index)
    generator = torch.Generator().manual_seed(seed)
    dropout = args.condition_dropout if variant in LEARNED else 0.0
    for _ in range(setting["epochs"]):
        order = torch.randperm(len(items), generator=generator)
        for start in range(0, len(items), args.batch_size):
            rows = order[start : start + args.batch_size]
            batch_ids = ids[rows]
            if dropout:  # some pairs train the generic entry (id 0): the user of k = 0
                batch_ids = batch_ids.masked_fill(torch.rand(len(rows), generator=generator) < dropout, 0)
            margin = model.rewards(features[chosen[rows]], batch_ids, tastes[rows]) - model.rewards(
                features[rejected[rows]], batch_ids, tastes[rows]
            )
            loss = -F.logsigmoid(margin).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), user_index


def fit_user(model: CachedRewardHead, features, shots, fit: dict, seed: int) -> int:
    """A new user's row fitted on k shots with `fit_new_row` (everything else frozen); returns its id."""
    chosen = torch.tensor([q * len(STYLES) + a for q, a, b, p in shots])
    rejected = torch.tensor([q * len(STYLES) + b for q, a, b, p in shots])

    def loss(indices, tokens):
        rows = torch.tensor(indices)
        vectors = tokens[:, 0].expand(len(rows), -1)
        with reward_head_forward(model, vectors):
            margin = model.classifier(features[chosen[rows]]) - model.classifier(features[rejected[rows]])
        return -F.logsigmoid(margin).mean()

    return fit_new_row(
        model, model.soft_tokens, loss, len(shots), steps=fit["steps"], learning_rate=fit["lr"], seed=seed
    )


def unseen_accuracy(model, features, user, k: int, fit: dict | None, seed: int) -> float:
    """Accuracy on an unseen user's eval pairs after k shots (k = 0, generic, oracle: no fit)."""
    items = [(user, pair) for pair in user["eval"]]
    if model.variant == "generic":
        return accuracy(model, features, items, {})
    if model.variant == "oracle":
        new_id = model.soft_tokens.add_row(torch.zeros_like(model.soft_tokens.rows[0]))
        return accuracy(model, features, items, {}, ids=torch.full((len(items),), new_id))
    if k == 0:
        return accuracy(model, features, items, {}, ids=torch.zeros(len(items), dtype=torch.long))
    new_id = fit_user(model, features, user["shots"][:k], fit, seed)
    return accuracy(model, features, items, {}, ids=torch.full((len(items),), new_id))
