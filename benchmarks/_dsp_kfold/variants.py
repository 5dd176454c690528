# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The variants of `dsp_kfold.py` as data: what each changes over the common budget (`VARIANTS`), and the
`CustomRewardConfig` keyword arguments it becomes."""

import dataclasses

from trl_custom import CustomRewardConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    trainer: str = "ours"  # "ours" (CustomRewardTrainer) or "stock" (TRL RewardTrainer on the by-hand rendering)
    config: dict = dataclasses.field(default_factory=dict)  # CustomRewardConfig kwargs over the common budget
    wordcut: bool = False  # train and evaluate on queries / responses cut to their first 32 / 60 words
    listwise: bool = False  # one row per (query, domain), `rejected` = the list of the other responses
    prompt_suffix: str = ""  # appended to every query (train and eval), e.g. " [SEP] " between query and response
    start: str = "pretrained"  # "pretrained", or "general": the stage-2 general RM (trained once, `--general_files`)
    dev_fraction: float = 0.0  # training queries held out as the dev split of early stopping (by query)
    early_stopping_patience: int | None = None  # evaluations without a better dev loss before training stops


# The MiniLM DSP stage-3 recipes' setting (text + embedding, the by-hand template, keep_start), listwise or not.
RECIPE_ROW = {
    "condition_mode": "text+embedding",
    "condition_learning_rate": 1e-2,
    "condition_template": "[domain: {condition}] ",
    "truncation_mode": "keep_start",
}
VARIANTS = {
    "by-hand": Variant(trainer="stock", wordcut=True),
    "text": Variant(config={"condition_mode": "text"}),
    "text-wordcut": Variant(config={"condition_mode": "text"}, wordcut=True),
    "embedding": Variant(config={"condition_mode": "embedding", "condition_learning_rate": 1e-2}),
    "text-embedding": Variant(config={"condition_mode": "text+embedding", "condition_learning_rate": 1e-2}),
    "text-keep-start": Variant(config={"condition_mode": "text", "truncation_mode": "keep_start"}),
    "text-prompt-budget": Variant(
        config={"condition_mode": "text", "truncation_mode": "keep_start", "max_prompt_length": 48}
    ),
    "text-mean-pool": Variant(config={"condition_mode": "text", "pooling": "mean"}),
    "text-listwise": Variant(config={"condition_mode": "text"}, listwise=True),
    "text-sep": Variant(config={"condition_mode": "text"}, prompt_suffix=" [SEP] "),
    "text-template": Variant(config={"condition_mode": "text", "condition_template": "[domain: {condition}] "}),
    "text-mean-pool-sep-template-keep-start": Variant(
        config={
            "condition_mode": "text",
            "condition_template": "[domain: {condition}] ",
            "truncation_mode": "keep_start",
            "pooling": "mean",
        },
        prompt_suffix=" [SEP] ",
    ),
    "text-sep-template-keep-start": Variant(
        config={
            "condition_mode": "text",
            "condition_template": "[domain: {condition}] ",
            "truncation_mode": "keep_start",
        },
        prompt_suffix=" [SEP] ",
    ),
    "text-embedding-template-keep-start": Variant(config=RECIPE_ROW),
    "text-embedding-template-keep-start-listwise": Variant(config=RECIPE_ROW, listwise=True),
    "text-warmup": Variant(config={"condition_mode": "text", "warmup_ratio": 0.1}),
    "text-2epochs": Variant(config={"condition_mode": "text", "num_train_epochs": 2}),
    "text-early-stop": Variant(
        config={
            "condition_mode": "text",
            "num_train_epochs": 3,
            "eval_strategy": "steps",
            "eval_steps": 1 / 12,  # 4 evaluations per epoch
            "save_strategy": "steps",
            "save_steps": 1 / 12,
            "save_total_limit": 2,
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
            "greater_is_better": False,
            "per_device_eval_batch_size": 64,
        },
        dev_fraction=0.1,
        early_stopping_patience=2,
    ),
    "text-from-general": Variant(config={"condition_mode": "text"}, start="general"),
}
# transformers 5 dropped `warmup_ratio`: a float `warmup_steps` < 1 is the ratio (used while the config lacks it)
FIELD_ALIASES = {"warmup_ratio": "warmup_steps"}


class VariantUnavailable(Exception):
    """The variant needs an option this version of trl-custom does not have."""


def config_kwargs(variant):
    """The variant's `CustomRewardConfig` kwargs; `VariantUnavailable` names the options this version lacks."""
    fields = {f.name for f in dataclasses.fields(CustomRewardConfig)}
    kwargs = {}
    for key, value in variant.config.items():
        if key not in fields and FIELD_ALIASES.get(key) in fields:
            key = FIELD_ALIASES[key]
        kwargs[key] = value
    missing = sorted(k for k in kwargs if k not in fields)
    if missing:
        raise VariantUnavailable(
            f"CustomRewardConfig has no field {', '.join(missing)}: a trainer option this version of trl-custom lacks"
        )
    return kwargs
