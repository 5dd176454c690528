# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The user model of a personalized policy, shared by every policy trainer (P-DPO, personalized GRPO and RLOO): the
options ([`PolicyConditioningArguments`]), whether a run personalizes, and its users."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any

from accelerate import PartialState
from datasets import IterableDataset
from trl.data_utils import get_dataset_column_names

from .arguments import ConditioningArguments
from .spec import SOFT_TOKEN_KINDS, ConditioningSpec, is_missing


logger = logging.getLogger(__name__)
POLICY_CONDITION_MODES = ("auto", "none", "embedding")
# Options that only mean something with personalization on (an error when it is off and one of them is set)
PERSONALIZATION_OPTIONS = (
    "conditions",
    "strict_conditions",
    "num_condition_tokens",
    "condition_model",
    "condition_dim",
    "num_prototypes",
    "condition_feature_columns",
    "group_column",
    "condition_learning_rate",
)
# The former names of the options, shared by the policy configs
RENAMED_USER_OPTIONS = {
    "personalize": "was replaced by condition_mode: None -> 'auto', True -> 'embedding', False -> 'none'.",
    "user_column": "was renamed condition_column (the name CustomRewardConfig uses).",
    "users": "was renamed conditions.",
    "strict_users": "was renamed strict_conditions.",
    "num_user_tokens": "was renamed num_condition_tokens.",
    "user_dim": "was renamed condition_dim.",
    "user_model_type": "was renamed condition_model: 'individual' -> 'lowrank', 'cluster' -> 'prototype'.",
    "num_clusters": "was renamed num_prototypes.",
    "user_feature_columns": "was renamed condition_feature_columns.",
    "user_group_column": "was renamed group_column.",
    "user_learning_rate": "was renamed condition_learning_rate.",
}


@dataclass
class PolicyConditioningArguments(ConditioningArguments):
    r"""
    The user model of a personalized policy: [`ConditioningArguments`] with a policy's defaults, plus user features
    and the metrics group.

    Parameters:
        condition_mode (`str`, *optional*, defaults to `"auto"`):
            `"auto"`: personalize when the training dataset has `condition_column`, else train exactly as the TRL
            trainer (one log line says so). `"embedding"`: require the column (an error names it when missing): each
            user's soft tokens go in front of the policy's input. `"none"`: never (the user options must then keep
            their defaults: setting one is an error, not a no-op).
        condition_column (`str`, *optional*, defaults to `"user_id"`):
            Dataset column with the user id (int or string). Empty/`None` means the generic user.
        condition_model (`str`, *optional*, defaults to `"lowrank"`):
            `"lowrank"`: generic tokens + a `condition_dim`-sized vector per user times a shared basis (P-RLHF's
            individual user model); `"prototype"`: a mixture, per user, of `num_prototypes` shared prototypes
            (P-RLHF's cluster model); `"table"`: free tokens per user.
        condition_feature_columns (`list[str]` or `None`, *optional*, defaults to `None`):
            Numeric dataset columns with user features, added to the user's vector through a linear map.
        group_column (`str` or `None`, *optional*, defaults to `None`):
            Column naming a group per row (e.g. `"short"`/`"long"`), for per-group metrics. If `None`, per-user
            metrics are logged when there are at most 20 users, users outside the table as `unseen`.
    """

    condition_mode: str = field(
        default="auto",
        metadata={"help": "'auto' (when the dataset has the user column), 'none' or 'embedding'.",
                  "choices": POLICY_CONDITION_MODES},
    )  # fmt: skip
    condition_column: str = field(default="user_id", metadata={"help": "Dataset column with the user id."})
    condition_model: str = field(
        default="lowrank", metadata={"help": "'lowrank', 'prototype' or 'table'.", "choices": SOFT_TOKEN_KINDS}
    )
    condition_feature_columns: list[str] | None = field(
        default=None, metadata={"help": "Numeric user-feature columns."}
    )
    group_column: str | None = field(default=None, metadata={"help": "Column naming a group per row, for metrics."})

    def __post_init__(self):
        super().__post_init__()
        if self.condition_mode is None:
            self.condition_mode = "auto"
        if self.condition_mode not in POLICY_CONDITION_MODES:
            hint = " (a policy reads its user from soft tokens)" if "text" in str(self.condition_mode) else ""
            raise ValueError(f"condition_mode={self.condition_mode!r}: choose one of {POLICY_CONDITION_MODES}{hint}.")


def personalized_args(args, model, config_class, base_class, suffix: str):
    """
    `args` as a personalized trainer's config: `None` -> a default `config_class` named after `model` (TRL's default
    `output_dir` shape, `<model>-<suffix>`); a plain TRL `base_class` config -> the same values with personalization
    off (`condition_mode="none"`: the trainer is TRL's); any other type is refused.
    """
    if args is None:
        from .. import trl_seams

        name = model if isinstance(model, str) else trl_seams.name_or_path(model)
        return config_class(f"{os.path.basename(str(name).rstrip('/'))}-{suffix}")
    if isinstance(args, config_class):
        return args
    if not isinstance(args, base_class):
        raise TypeError(
            f"`args` must be a {config_class.__name__} or {base_class.__name__}, got {type(args).__name__}."
        )
    values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
    return config_class(**{**values, "condition_mode": "none"})


def saved_user_model(model, soft_tokens=None):
    """
    The user model a policy `model` carries: `(its saved conditioning or None, its soft tokens)`, from a folder saved
    by a personalized trainer (the record and `soft_tokens.safetensors`) or from a loaded model; an explicit
    `soft_tokens` wins.
    """
    from ..record import ModelRecord, has_record
    from .module import SoftTokens, get_soft_tokens

    saved = None
    if isinstance(model, str) and has_record(model):
        saved = ModelRecord.load(model, kind="policy").conditioning
        if soft_tokens is None and saved.uses_soft_tokens:
            soft_tokens = SoftTokens.load(model, saved.tokens)
    elif not isinstance(model, str):
        saved = ModelRecord.of(model, kind="policy").conditioning
        soft_tokens = soft_tokens if soft_tokens is not None else get_soft_tokens(model)
    return saved, soft_tokens


def resolve_personalization(args, trainer_name: str, train_dataset, eval_dataset, options=PERSONALIZATION_OPTIONS):
    """
    Whether a policy trainer personalizes: `condition_mode`, or (`"auto"`) whether the training set has the user
    column. Off, every user option in `options` must keep its default (an error names them); on, every dataset must
    have the user column.
    """
    personalize = {"auto": None, "none": False, "embedding": True}[args.condition_mode]
    if personalize is None:
        personalize = train_dataset is not None and args.condition_column in get_dataset_column_names(train_dataset)
        if not personalize and PartialState().is_main_process:
            logger.warning(
                f"Personalization is off: the training dataset has no '{args.condition_column}' column "
                f"(`condition_column`), so {trainer_name} trains exactly as TRL's trainer. Add the column (or set "
                "`condition_column`) to personalize."
            )
    if not personalize:
        defaults = type(args).__dataclass_fields__
        changed = [name for name in options if getattr(args, name) != defaults[name].default]
        if changed:
            reason = (
                "condition_mode='none'"
                if args.condition_mode == "none"
                else f"the training dataset has no '{args.condition_column}' column"
            )
            raise ValueError(
                f"Personalization is off ({reason}), so {', '.join(f'{n}={getattr(args, n)!r}' for n in changed)} "
                "would be ignored. Add the user column to the dataset (or set `condition_column`), or remove these "
                "options."
            )
        return False
    datasets = [("train", train_dataset)]
    if eval_dataset is not None:
        datasets += list(eval_dataset.items()) if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]
    for name, dataset in datasets:
        check_user_columns(args, dataset, name)
    return True


def check_user_columns(args, dataset, name: str) -> None:
    """The user column (and feature columns) a personalized policy reads, in `dataset`; an error names the fix."""
    if dataset is None:
        return
    columns = get_dataset_column_names(dataset)
    if args.condition_column not in columns:
        raise ValueError(
            f"The {name} dataset has no '{args.condition_column}' column (columns: {columns}). A personalized policy "
            "needs the user of each row: add the column, or set `condition_column` to the column holding the user id."
        )
    for column in args.condition_feature_columns or []:
        if column not in columns:
            raise ValueError(
                f"The {name} dataset has no user-feature column '{column}' (columns: {columns}). Add the column, or "
                "remove it from `condition_feature_columns`."
            )


def distinct_users(args, dataset) -> list[str]:
    """`conditions`, or the training set's user ids, sorted (numeric ids in numeric order)."""
    if args.conditions is not None:
        return [str(u) for u in args.conditions]
    if isinstance(dataset, IterableDataset):
        raise ValueError("An IterableDataset cannot be scanned for its users: pass `conditions=[...]` in the config.")
    users = {str(u) for u in dataset[args.condition_column] if not is_missing(u)}
    return sorted(users, key=lambda u: (len(u), u))


def policy_spec(args, saved: ConditioningSpec | None, soft_tokens: Any, train_dataset) -> ConditioningSpec:
    """
    The users of a personalized policy: `conditions`, or those of the user model it continues (`soft_tokens`, saved
    with `saved`) followed by the training set's users it does not know, or the training set's.
    """
    num_features = len(args.condition_feature_columns or [])
    spec = args.conditioning_spec("embedding", [], placement="prepend", num_features=num_features)
    if soft_tokens is None:
        spec.conditions = distinct_users(args, train_dataset)
        return spec
    known = list(saved.conditions) if saved is not None and saved.uses_soft_tokens else []
    if args.conditions is not None and list(args.conditions)[: len(known)] != known:
        raise ValueError(
            f"The user model was trained for users {known[:10]}{'...' if len(known) > 10 else ''}; `conditions` must "
            "start with them (new users may follow). Leave `conditions` unset to continue."
        )
    if soft_tokens.num_rows != len(known) + 1:
        raise ValueError(
            f"The given soft tokens have {soft_tokens.num_rows} rows but the model's record names {len(known)} users "
            "(+ the generic user): pass the soft tokens saved with the model."
        )
    new = distinct_users(args, train_dataset)
    spec.conditions = known + [u for u in new if u not in known]
    spec.tokens = soft_tokens.config
    return spec
