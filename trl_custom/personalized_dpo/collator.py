# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The batches of [`PersonalizedDPOTrainer`]: TRL's DPO collator plus each pair's user, its features and its metrics
group; and the row checks of the user columns."""

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

from ..data.checks import empty_response_error, feature_error, is_finite_number
from ..data.preferences import is_empty_response
from ..soft_tokens import ConditioningSpec, is_missing


USER_KEYS = ("user_ids", "user_features", "user_groups")
MAX_USERS_WITH_METRICS = 20


@dataclass
class DataCollatorForPersonalizedPreference(DataCollatorForPreference):
    """
    TRL's DPO [`~trl.trainer.dpo_trainer.DataCollatorForPreference`] plus the user of each pair: `"user_ids"`
    (`(batch,)` indices into the user table, 0 = generic), and `"user_features"` / `"user_groups"` when present.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        for key in USER_KEYS:
            if key in examples[0]:
                dtype = torch.float if key == "user_features" else torch.long
                output[key] = torch.tensor([example[key] for example in examples], dtype=dtype)
        return output


def group_of(value, spec: ConditioningSpec, group_column: str | None) -> str:
    """The metrics group of a row: its `group_column` value, or its user (`"unseen"`: a user outside the table)."""
    if group_column is not None:
        return str(value)
    return str(value) if not is_missing(value) and spec.is_known(value) else "unseen"


def check_value(column, value, index, dataset_name, args) -> None:
    """Refuse, naming the row, the column and the fix, an empty response or a non-numeric/non-finite user feature."""
    if column in ("chosen", "rejected"):
        if is_empty_response(value):
            raise empty_response_error(index, column, f"the {dataset_name} dataset")
    elif not is_finite_number(value):
        raise feature_error(index, column, value, f"the {dataset_name} dataset")
