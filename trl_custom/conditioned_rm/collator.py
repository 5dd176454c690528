# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The batches of [`CustomRewardTrainer`]: TRL's reward collator plus condition ids, imitation mask, listwise rows."""

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.reward_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from .listwise import is_listwise_example


@dataclass
class DataCollatorForConditionedPreference(DataCollatorForPreference):
    """
    TRL's reward [`~trl.trainer.reward_trainer.DataCollatorForPreference`] plus the condition ids and, for the
    imitation loss, the mask of the chosen responses' completion tokens.

    Adds to the batch:
    - `"condition_ids"` (`(batch,)`), when the examples have a `"condition_ids"` key;
    - `"completion_mask"` (same shape as `"input_ids"`), when `return_completion_mask` is set: 1 on the chosen
      completion tokens (from each example's `"completion_start"`), 0 on prompts, padding and rejected rows.
    """

    return_completion_mask: bool = False

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if examples and is_listwise_example(examples[0]):
            output = self._listwise_call(examples)
        else:
            output = super().torch_call(examples)
        if "condition_ids" in examples[0]:
            output["condition_ids"] = torch.tensor([example["condition_ids"] for example in examples])
        if self.return_completion_mask:
            mask = torch.zeros_like(output["input_ids"])
            for row, example in enumerate(examples):
                mask[row, example["completion_start"] : len(example["chosen_ids"])] = 1
            output["completion_mask"] = mask
        return output

    def _listwise_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Listwise rows: the chosen sequences, then every rejected sequence row after row, padded together;
        `"rejected_group"` (`(rejected,)`) names each rejected sequence's row, `"margin"` is per rejected sequence."""
        chosen = [torch.tensor(example["chosen_ids"]) for example in examples]
        rejected = [torch.tensor(ids) for example in examples for ids in example["rejected_ids"]]
        group = [row for row, example in enumerate(examples) for _ in example["rejected_ids"]]
        sequences = chosen + rejected
        padding = {"padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of}
        output = {
            "input_ids": pad(sequences, padding_value=self.pad_token_id, **padding),
            "attention_mask": pad([torch.ones_like(ids) for ids in sequences], padding_value=0, **padding),
            "rejected_group": torch.tensor(group),
        }
        if "margin" in examples[0]:
            margins = []
            for example in examples:
                margin = example["margin"]
                margins += margin if isinstance(margin, list) else [margin] * len(example["rejected_ids"])
            output["margin"] = torch.tensor(margins, dtype=torch.float)
        return output
