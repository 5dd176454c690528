# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import logging
import math
import numbers
import os
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from accelerate import PartialState
from datasets import Dataset, IterableDataset
from transformers.modeling_outputs import SequenceClassifierOutput
from trl import RewardTrainer
from trl.data_utils import common_prefix_length, get_dataset_column_names, is_conversational
from trl.trainer.reward_trainer import DataCollatorForPreference

from ..attached_modules import split_attached_state, uses_zero3, with_own_learning_rate
from ..checkpointing import AttachedModuleCheckpointing, check_saved_state, load_saved_state
from ..data.preferences import is_empty_response
from ..packing import check_packable
from .conditioning import (
    CONDITION_EMBEDDINGS_FILE,
    CONDITION_TABLE_ATTRIBUTE,
    CONDITIONING_FILE,
    ConditioningSpec,
    attach_condition_table,
    check_position_budget,
    get_condition_table,
    is_missing_condition,
    reward_forward,
    save_condition_table,
    uses_last_token_pooling,
)
from .custom_reward_config import CustomRewardConfig
from .encoding import apply_text_condition, encode_prompt, encode_sequence, truncate_ids
from .imitation import chunked_lm_loss, lm_head_weight
from .reward_head import with_trained_reward_head


logger = logging.getLogger(__name__)


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
        output = super().torch_call(examples)
        if "condition_ids" in examples[0]:
            output["condition_ids"] = torch.tensor([example["condition_ids"] for example in examples])
        if self.return_completion_mask:
            mask = torch.zeros_like(output["input_ids"])
            for row, example in enumerate(examples):
                mask[row, example["completion_start"] : len(example["chosen_ids"])] = 1
            output["completion_mask"] = mask
        return output


class CustomRewardTrainer(AttachedModuleCheckpointing, RewardTrainer):
    """
    Reward trainer for *customized* reward models (DSP, "Everyone Deserves A Reward"): one reward model conditioned on
    a domain or user, with customized preference imitation and margin regularization.

    A drop-in subclass of TRL's [`~trl.RewardTrainer`]: it takes the same arguments and datasets (standard or
    conversational, explicit or implicit prompt, iterable, pre-tokenized), and with `condition_mode="none"` and no
    imitation it computes the same loss. On top of it:

    - **conditioning** on `args.condition_column` (`"text"` or `"embedding"` mode, see [`CustomRewardConfig`]);
    - **imitation loss**: `imitation_coef` x LM loss on the chosen response tokens (causal-LM backbones);
    - **margins**: the `margin` column scaled by `margin_coef`, checked for NaN/inf;
    - tokenizers without EOS (BERT, MiniLM) and pairs longer than `max_length` (truncated, dropped or refused, and
      counted) are handled;
    - a PEFT config that would leave the reward head frozen (no `task_type="SEQ_CLS"`) gets the head added to its
      `modules_to_save`, with a warning;
    - metrics: `accuracy/<condition>` per condition value, `ranking_loss`, `imitation_loss`;
    - **padding-free batches** (`padding_free=True`): chosen and rejected sequences packed without padding, with the
      same rewards and losses (decoder reward models).

    Save with `trainer.save_model(dir)`; reload for scoring with [`~trl_custom.RewardScorer.from_pretrained`] (which
    also restores the condition table and the LoRA adapter). Every `checkpoint-N/` folder holds the same files plus
    the optimizer, scheduler, RNG and trainer state: `trainer.train(resume_from_checkpoint=...)` (a path or `True`)
    restores the condition table with the rest, and refuses a checkpoint written for other conditions.

    Example:

    ```python
    >>> from trl_custom import CustomRewardConfig, CustomRewardTrainer
    >>> from trl_custom.data import load_dsp_pairs

    >>> dataset = load_dsp_pairs("dsp_queries.json")  # prompt, chosen, rejected, domain
    >>> args = CustomRewardConfig("dsp-rm", condition_mode="embedding", condition_column="domain")
    >>> trainer = CustomRewardTrainer(model="my-general-rm", args=args, train_dataset=dataset)
    >>> trainer.train()
    ```

    Args:
        model, data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        optimizer_cls_and_kwargs, preprocess_logits_for_metrics, quantization_config, peft_config:
            As in [`~trl.RewardTrainer`]. A string `model` pointing to a directory saved by this trainer in embedding
            mode is reloaded with its condition table. With PEFT, the condition table is trained and saved beside the
            adapter.
        args ([`CustomRewardConfig`], *optional*):
            Configuration. A plain [`~trl.RewardConfig`] is accepted and means `condition_mode="none"`.
    """

    _tag_names = ["trl", "reward-trainer", "trl-custom"]
    _name = "Custom Reward"
    _attached_attribute = CONDITION_TABLE_ATTRIBUTE

    def __init__(self, model, args=None, data_collator=None, train_dataset=None, eval_dataset=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = CustomRewardConfig(f"{os.path.basename(str(name).rstrip('/'))}-CustomReward")
        elif not isinstance(args, CustomRewardConfig):
            values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
            args = CustomRewardConfig(**{**values, "condition_mode": "none"})
        if isinstance(model, str) and os.path.isfile(os.path.join(model, "conditioning.json")):
            from .scoring import load_reward_model

            model, _, _ = load_reward_model(model)
        if kwargs.get("peft_config") is not None:
            kwargs["peft_config"] = with_trained_reward_head(kwargs["peft_config"], model, args)
        self.conditioning = self._build_spec(args, model, train_dataset, eval_dataset)
        if data_collator is None and train_dataset is not None:
            # Built here because TRL's default collator would drop the condition ids; the pad token is settled the
            # same way TRL does it once `processing_class` is known, so the collator is finished in `_finish_collator`.
            data_collator = DataCollatorForConditionedPreference(
                pad_token_id=-1,
                pad_to_multiple_of=args.pad_to_multiple_of,
                return_completion_mask=args.imitation_coef > 0,
            )
            self._owns_collator = True
        else:
            self._owns_collator = False
        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            **kwargs,
        )
        if self._owns_collator:
            self.data_collator.pad_token_id = self.processing_class.pad_token_id
        unwrapped = self.accelerator.unwrap_model(self.model)
        unwrapped.trl_custom_conditioning = self.conditioning  # scorers and exporters read the spec from the model
        self.condition_table = None
        if self.conditioning.mode == "embedding":
            self.condition_table = attach_condition_table(unwrapped, self.conditioning)
            check_position_budget(unwrapped.config, args.max_length, self.conditioning.num_tokens)
        if args.padding_free:
            check_packable(unwrapped, decoder=uses_last_token_pooling(unwrapped))
        if args.imitation_coef > 0:
            if uses_zero3(args):
                raise ValueError(
                    "imitation_coef > 0 reads the LM head outside the model's forward, which DeepSpeed ZeRO-3 "
                    "partitions: train with ZeRO-2 (accelerate_configs/deepspeed_zero2.yaml), DDP with LoRA/QLoRA, "
                    "or set imitation_coef: 0."
                )
            lm_head_weight(unwrapped)  # fail now, not at the first step, on backbones without an LM head

    # ------------------------------------------------------------------ conditioning vocabulary
    @staticmethod
    def _build_spec(args, model, train_dataset, eval_dataset) -> ConditioningSpec:
        saved = getattr(model, "trl_custom_conditioning", None) if not isinstance(model, str) else None
        if args.condition_mode == "none":
            return ConditioningSpec(mode="none", column=args.condition_column)
        conditions = args.conditions
        if saved is not None and saved.mode == args.condition_mode == "embedding":
            if conditions is not None and list(conditions) != saved.conditions:
                raise ValueError(
                    f"The model's condition table was trained for conditions {saved.conditions}, but "
                    f"`conditions={list(conditions)}` was given. Leave `conditions` unset to continue training it."
                )
            conditions = saved.conditions
        if conditions is None:
            conditions = CustomRewardTrainer._distinct_conditions(args, train_dataset, "train")
            if args.condition_mode == "text" and eval_dataset is not None:  # text mode: the vocabulary is for metrics
                eval_sets = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
                for dataset in eval_sets:
                    conditions = sorted(
                        set(conditions) | set(CustomRewardTrainer._distinct_conditions(args, dataset, "eval"))
                    )
        return ConditioningSpec(
            mode=args.condition_mode,
            column=args.condition_column,
            conditions=list(conditions),
            template=args.condition_template,
            num_tokens=args.num_condition_tokens,
            strict=args.strict_conditions,
        )

    @staticmethod
    def _distinct_conditions(args, dataset, name) -> list[str]:
        if dataset is None:
            return []
        column_names = get_dataset_column_names(dataset)
        if args.condition_column not in column_names:
            raise ValueError(
                f"The {name} dataset has no '{args.condition_column}' column (columns: {column_names}), but "
                f"condition_mode={args.condition_mode!r} conditions on it. Add the column, set `condition_column` to "
                "the column holding the domain/user, or set `condition_mode='none'`."
            )
        if isinstance(dataset, IterableDataset):
            if args.condition_mode == "embedding":
                raise ValueError(
                    "An IterableDataset cannot be scanned for its condition values: pass `conditions=[...]` in the "
                    "config when training in embedding mode on a streaming dataset."
                )
            return []
        return sorted({str(v) for v in dataset[args.condition_column] if not is_missing_condition(v)})

    # ------------------------------------------------------------------ dataset
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        column_names = get_dataset_column_names(dataset)
        spec = self.conditioning
        if "chosen_ids" in column_names and "rejected_ids" in column_names:
            if spec.mode == "text":
                raise ValueError(
                    f"The {dataset_name} dataset is already tokenized (chosen_ids/rejected_ids), so the condition "
                    "cannot be rendered into it in text mode. Pass the raw text columns, or use "
                    "condition_mode='embedding' or 'none'."
                )
            if args.imitation_coef > 0 and "completion_start" not in column_names:
                raise ValueError(
                    f"The tokenized {dataset_name} dataset has no 'completion_start' column, needed by the imitation "
                    "loss to mask the prompt. Pass raw text columns, or add it."
                )
        else:
            for column in ("chosen", "rejected"):
                if column not in column_names:
                    raise ValueError(
                        f"The {dataset_name} dataset has no '{column}' column (columns: {column_names}). Reward "
                        "training needs preference pairs: 'chosen' and 'rejected' (and optionally 'prompt')."
                    )
        if spec.mode != "none" and spec.column not in column_names:
            raise ValueError(
                f"The {dataset_name} dataset has no '{spec.column}' column (columns: {column_names}), but "
                f"condition_mode={spec.mode!r} conditions on it. Add the column, set `condition_column`, or set "
                "`condition_mode='none'`."
            )
        if isinstance(dataset, Dataset):
            self._validate_rows(dataset, column_names, dataset_name)

        map_kwargs = {}
        if isinstance(dataset, Dataset):
            map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Tokenizing {dataset_name} dataset"}
        if "chosen_ids" not in column_names:
            dataset = dataset.map(
                self._tokenize_example,
                fn_kwargs={"tokenizer": processing_class, "dataset_name": dataset_name},
                with_indices=True,
                **map_kwargs,
            )
        elif spec.mode != "none":
            dataset = dataset.map(
                self._add_condition_id, fn_kwargs={"dataset_name": dataset_name}, with_indices=True, **map_kwargs
            )
        return self._enforce_max_length(dataset, args.max_length, args.long_pair_policy, dataset_name)

    def _validate_rows(self, dataset: Dataset, column_names: list[str], dataset_name: str) -> None:
        """Fail early, naming the row, on empty responses, non-finite margins and (strict) unknown conditions."""
        for column in ("chosen", "rejected"):
            if column not in column_names:
                continue
            for index, value in enumerate(dataset[column]):
                if is_empty_response(value):
                    raise ValueError(
                        f"Row {index} of the {dataset_name} dataset has an empty '{column}' response. Remove the row "
                        "or fill in the response: an empty response cannot be ranked."
                    )
        if "margin" in column_names:
            for index, value in enumerate(dataset["margin"]):
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                    raise ValueError(
                        f"Row {index} of the {dataset_name} dataset has margin={value!r}. Margins must be finite "
                        "numbers: fix or drop the row (use 0.0 for 'no margin'), or cast the column to float "
                        "(`dataset.cast_column('margin', Value('float32'))`)."
                    )
        if self.conditioning.mode != "none" and self.conditioning.strict:
            for index, value in enumerate(dataset[self.conditioning.column]):
                self.conditioning.condition_id(value, where=f" in row {index} of the {dataset_name} dataset")

    def _add_condition_id(self, example, index, dataset_name):
        where = f" in row {index} of the {dataset_name} dataset"
        value = example.get(self.conditioning.column)
        return {"condition_ids": self.conditioning.condition_id(value, where)}

    def _tokenize_example(self, example, index, tokenizer, dataset_name):
        spec = self.conditioning
        for column in ("chosen", "rejected"):
            if is_empty_response(example[column]):
                raise ValueError(f"Row {index} of the {dataset_name} dataset has an empty '{column}' response.")
        condition = example.get(spec.column) if spec.mode != "none" else None
        prompt = example.get("prompt")
        prompt, (chosen, rejected) = apply_text_condition(
            spec, condition, prompt, [example["chosen"], example["rejected"]]
        )
        chat_kwargs = {}
        if is_conversational(example):
            tools = example.get("tools")
            chat_kwargs = {"tools": tools, **example.get("chat_template_kwargs", {})}
        chosen_ids = encode_sequence(tokenizer, prompt, chosen, **chat_kwargs)
        rejected_ids = encode_sequence(tokenizer, prompt, rejected, **chat_kwargs)
        if prompt is not None:
            completion_start = common_prefix_length(encode_prompt(tokenizer, prompt, **chat_kwargs), chosen_ids)
        else:
            completion_start = common_prefix_length(chosen_ids, rejected_ids)
        output = {"chosen_ids": chosen_ids, "rejected_ids": rejected_ids, "completion_start": completion_start}
        if spec.mode != "none":
            output["condition_ids"] = spec.condition_id(condition, f" in row {index} of the {dataset_name} dataset")
        return output

    @staticmethod
    def _enforce_max_length(dataset, max_length, policy, dataset_name):
        if max_length is None:
            return dataset

        def too_long(example):
            return len(example["chosen_ids"]) > max_length or len(example["rejected_ids"]) > max_length

        def truncate(example):
            return {
                "chosen_ids": truncate_ids(example["chosen_ids"], max_length),
                "rejected_ids": truncate_ids(example["rejected_ids"], max_length),
            }

        if isinstance(dataset, IterableDataset):  # lazy: counts are unknown up front
            if policy == "error":

                def refuse(example):
                    if too_long(example):
                        raise ValueError(
                            f"A pair of the {dataset_name} dataset is longer than max_length={max_length} tokens. "
                            "Raise max_length, or set long_pair_policy='truncate' or 'drop'."
                        )
                    return example

                return dataset.map(refuse)
            if PartialState().is_main_process:
                logger.warning(
                    f"Pairs of the streaming {dataset_name} dataset longer than max_length={max_length} will be "
                    f"{'truncated' if policy == 'truncate' else 'dropped'} (count unknown for an IterableDataset)."
                )
            return dataset.map(truncate) if policy == "truncate" else dataset.filter(lambda ex: not too_long(ex))

        lengths = zip(dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
        long_rows = [i for i, (c, r) in enumerate(lengths) if len(c) > max_length or len(r) > max_length]
        if not long_rows:
            return dataset
        count = f"{len(long_rows)} of {len(dataset)} pairs of the {dataset_name} dataset"
        if policy == "error":
            raise ValueError(
                f"{count} are longer than max_length={max_length} tokens (rows {long_rows[:10]}"
                f"{'...' if len(long_rows) > 10 else ''}). Raise max_length, or set long_pair_policy='truncate' or "
                "'drop'."
            )
        if policy == "drop":
            long_set = set(long_rows)
            dataset = dataset.select([i for i in range(len(dataset)) if i not in long_set])
            message = f"Dropped {count}: longer than max_length={max_length} tokens (rows {long_rows[:10]})."
        else:
            dataset = dataset.map(truncate, desc=f"Truncating {dataset_name} pairs to {max_length} tokens")
            head = max(1, max_length // 4)
            message = (
                f"Truncated {count} to max_length={max_length} tokens (kept the first {head} and the last "
                f"{max_length - head} tokens of each sequence)."
            )
        if PartialState().is_main_process:
            logger.warning(message)
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "condition_ids", "completion_start"]

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        condition_ids = inputs.pop("condition_ids", None)
        completion_mask = inputs.pop("completion_mask", None)
        margin = inputs.pop("margin", None)
        if condition_ids is not None and mode == "train" and self.args.condition_dropout > 0:
            dropped = torch.rand(condition_ids.shape, device=condition_ids.device) < self.args.condition_dropout
            condition_ids = condition_ids.masked_fill(dropped, 0)

        imitation = self.args.imitation_coef > 0
        table = self.condition_table
        forward = reward_forward(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            condition_ids=condition_ids.repeat(2) if (table is not None and condition_ids is not None) else None,
            table=table,
            completion_mask=completion_mask,
            output_hidden_states=imitation,
            base_model=self.accelerator.unwrap_model(model) if (table is not None or self.args.padding_free) else None,
            padding_free=self.args.padding_free,
        )
        rewards = forward["rewards"]
        rewards_chosen, rewards_rejected = torch.chunk(rewards, chunks=2)

        logits = rewards_chosen - rewards_rejected
        if margin is not None:
            logits = logits - self.args.margin_coef * margin
        ranking_loss = -nn.functional.logsigmoid(logits).mean()
        loss = ranking_loss
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        if imitation:
            imitation_loss = self._imitation_loss(model, forward)
            loss = loss + self.args.imitation_coef * imitation_loss

        self._log_metrics(mode, inputs, rewards, rewards_chosen, rewards_rejected, condition_ids, ranking_loss)
        if imitation:
            self._metrics[mode]["imitation_loss"].append(
                self.accelerator.gather_for_metrics(imitation_loss.detach()).mean().item()
            )
        outputs = SequenceClassifierOutput(logits=rewards.unsqueeze(-1))
        return (loss, outputs) if return_outputs else loss

    def _imitation_loss(self, model, forward) -> torch.Tensor:
        """LM loss on the chosen responses' completion tokens (prompt masked), computed chunked over the LM head."""
        hidden = forward["hidden"]
        half = hidden.shape[0] // 2
        hidden, input_ids, mask = hidden[:half], forward["input_ids"][:half], forward["completion_mask"][:half]
        predicts = mask[:, 1:].bool()  # position t predicts token t+1
        weight = lm_head_weight(self.accelerator.unwrap_model(model))
        return chunked_lm_loss(
            hidden[:, :-1][predicts], weight, input_ids[:, 1:][predicts], self.args.imitation_chunk_size
        )

    def _log_metrics(self, mode, inputs, rewards, rewards_chosen, rewards_rejected, condition_ids, ranking_loss):
        metrics = self._metrics[mode]
        if mode == "train":
            num_tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += num_tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            all_rewards = self.accelerator.gather(rewards.detach())
            metrics["min_reward"].append(all_rewards.min().item())
            metrics["mean_reward"].append(all_rewards.mean().item())
            metrics["max_reward"].append(all_rewards.max().item())
            correct = (rewards_chosen > rewards_rejected).float()
            metrics["accuracy"].append(self.accelerator.gather_for_metrics(correct.mean()).mean().item())
            margin = (rewards_chosen - rewards_rejected).mean()
            metrics["margin"].append(self.accelerator.gather_for_metrics(margin).mean().item())
            metrics["ranking_loss"].append(self.accelerator.gather_for_metrics(ranking_loss.detach()).mean().item())
            if condition_ids is not None:
                ids = self.accelerator.gather_for_metrics(condition_ids).tolist()
                flags = self.accelerator.gather_for_metrics(correct).tolist()
                names = self.conditioning.names
                for condition_id, flag in zip(ids, flags, strict=True):
                    metrics[f"accuracy/{names[condition_id]}"].append(flag)

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the condition table in its own group when `condition_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.condition_table is None or self.is_deepspeed_enabled:  # DeepSpeed builds its own optimizer
            return optimizer
        return with_own_learning_rate(optimizer, self.condition_table, self.args.condition_learning_rate)

    # ------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.conditioning.mode == "embedding":
            if state_dict is None:
                state_dict = self.accelerator.unwrap_model(self.model).state_dict()
            state_dict, table = split_attached_state(state_dict, CONDITION_TABLE_ATTRIBUTE)
            table_state = table["weight"] if table else get_condition_table(self.model).weight
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save and self.conditioning.mode != "none":
            self.conditioning.save(output_dir)
            if self.conditioning.mode == "embedding":
                save_condition_table(table_state, output_dir)

    # ------------------------------------------------------------------ resuming (see trl_custom.checkpointing)
    def _check_resumable(self, checkpoint: str) -> None:
        """Refuse, naming the file and the fix, a checkpoint whose conditioning does not match this trainer's."""
        spec = self.conditioning
        fix = (
            "Resume with the configuration (condition_mode, conditions, num_condition_tokens) the checkpoint was "
            "trained with, or start a new run: a new output_dir, without resume_from_checkpoint."
        )
        path = os.path.join(checkpoint, CONDITIONING_FILE)
        if not os.path.isfile(path):
            if spec.mode != "none":
                raise FileNotFoundError(
                    f"{path} is missing: {checkpoint} was not written by a condition_mode={spec.mode!r} "
                    f"CustomRewardTrainer, so it cannot be resumed here. {fix}"
                )
            return
        saved = ConditioningSpec.load(checkpoint)
        fields_to_match = {
            "none": ["mode"],
            "text": ["mode", "template"],
            "embedding": ["mode", "conditions", "num_tokens"],
        }
        differ = {
            name: (getattr(saved, name), getattr(spec, name))
            for name in fields_to_match[spec.mode]
            if getattr(saved, name) != getattr(spec, name)
        }
        if differ:
            details = "; ".join(f"{name}: saved {old!r}, this run {new!r}" for name, (old, new) in differ.items())
            raise ValueError(f"{path} does not match this trainer's conditioning ({details}). {fix}")
        if spec.mode == "embedding":
            check_saved_state(self.condition_table, os.path.join(checkpoint, CONDITION_EMBEDDINGS_FILE), fix)

    def _restore_attached(self, checkpoint: str) -> None:
        if self.conditioning.mode == "embedding":
            fix = "Resume from a checkpoint-N folder written by this trainer (it saves the table in each)."
            load_saved_state(self.condition_table, os.path.join(checkpoint, CONDITION_EMBEDDINGS_FILE), fix)
