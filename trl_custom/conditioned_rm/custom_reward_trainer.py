# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import copy
import logging
import os
from dataclasses import fields

import torch
import torch.nn as nn
from accelerate import PartialState
from datasets import Dataset, IterableDataset
from transformers.modeling_outputs import SequenceClassifierOutput
from trl import RewardTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.utils import global_then_local_main_first

from ..attached_modules import split_attached_state, uses_zero3, with_own_learning_rate
from ..checkpointing import AttachedModuleCheckpointing, check_saved_state, load_saved_state
from ..data.checks import check_text_columns
from ..packing import check_packable
from .collator import DataCollatorForConditionedPreference
from .conditioning import (
    CONDITION_EMBEDDINGS_FILE,
    CONDITION_TABLE_ATTRIBUTE,
    CONDITIONING_FILE,
    ConditioningSpec,
    attach_condition_table,
    check_position_budget,
    conditioned_inputs,
    get_condition_table,
    is_missing_condition,
    reward_forward,
    save_condition_table,
    uses_last_token_pooling,
)
from .custom_reward_config import AUTO_CONDITION_MODE, CustomRewardConfig
from .encoding import (
    completion_start,
    render_condition_columns,
    without_missing_eos,
)
from .imitation import chunked_lm_loss, lm_head_weight
from .listwise import (
    check_listwise_rows,
    explode_listwise,
    is_listwise_dataset,
    plackett_luce_top1_loss,
    regroup_listwise,
)
from .metrics import log_our_metrics, log_trl_metrics
from .model_settings import record_input_settings, save_adapter_settings
from .preparation import check_row, condition_id, enforce_max_length, validate_rows
from .reward_head import with_trained_reward_head


logger = logging.getLogger(__name__)


class CustomRewardTrainer(AttachedModuleCheckpointing, RewardTrainer):
    """
    Reward trainer for *customized* reward models (DSP, "Everyone Deserves A Reward"): one reward model conditioned on
    a domain or user, with customized preference imitation and margin regularization.

    A drop-in subclass of TRL's [`~trl.RewardTrainer`]: it takes the same arguments and datasets (standard or
    conversational, explicit or implicit prompt, iterable, pre-tokenized, `tools`, `margin`), prepares them with TRL's
    own `_prepare_dataset` and, with the default `condition_mode="auto"` on a dataset without a `condition_column`
    column, computes TRL's loss and metrics with TRL's own `compute_loss` (tested step by step against it). On top of
    it:

    - **conditioning** on `args.condition_column` (`"text"` or `"embedding"` mode, see [`CustomRewardConfig`]);
    - **imitation loss**: `imitation_coef` x LM loss on the chosen response tokens (causal-LM backbones);
    - **margins**: the `margin` column scaled by `margin_coef`, checked for NaN/inf;
    - **listwise rows**: a list of rejected responses per row trains the Plackett–Luce top-1 loss (one softmax per
      row, see [`~trl_custom.conditioned_rm.listwise`]), the pairwise loss for one rejected response;
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
            As in [`~trl.RewardTrainer`]. A string `model` pointing to a directory saved by this trainer is reloaded
            with its condition table, `args.model_init_kwargs` and `quantization_config` applied as TRL applies them
            (dtype float32 unless given). With PEFT, the condition table is trained and saved beside the adapter.
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
        if isinstance(model, str) and os.path.isfile(os.path.join(model, CONDITIONING_FILE)):
            from .scoring import load_reward_model_for_training

            model, args = load_reward_model_for_training(model, args, kwargs)
        if kwargs.get("peft_config") is not None:
            kwargs["peft_config"] = with_trained_reward_head(kwargs["peft_config"], model, args)
        self.conditioning = self._build_spec(args, model, train_dataset, eval_dataset)
        if data_collator is None and train_dataset is not None:
            # Built here because TRL's default collator would drop the condition ids; TRL settles the pad token once
            # `processing_class` is known, so the collator gets it after `super().__init__`.
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
        record_input_settings(unwrapped, args)  # truncation and pooling, saved with the model
        self.condition_table = None
        if self.conditioning.mode == "embedding":
            self.condition_table = attach_condition_table(unwrapped, self.conditioning)
            self.condition_table.requires_grad_(True)  # a reloaded table was attached before PEFT froze the base
            check_position_budget(unwrapped.config, args.max_length, self.conditioning.num_tokens)
            held = {id(p) for group in getattr(self.optimizer, "param_groups", []) for p in group["params"]}
            if self.optimizer is not None and id(self.condition_table.weight) not in held:
                raise ValueError(
                    "The optimizer given in `optimizers` does not hold the condition table, which this trainer "
                    "creates in embedding mode, so the table would not train. Pass `optimizer_cls_and_kwargs` "
                    "instead: the trainer then builds the optimizer, with the table in it."
                )
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
    def _resolve_mode(args, saved: ConditioningSpec | None, train_dataset) -> str:
        """
        `args.condition_mode`, with `"auto"` resolved from the training dataset: `"text"` (`"embedding"` for a model
        saved in embedding mode) when it has the condition column, else `"none"` (TRL's `RewardTrainer`), said once.
        """
        if args.condition_mode != AUTO_CONDITION_MODE:
            return args.condition_mode
        if train_dataset is None:  # TRL refuses it
            return "none"
        column_names = get_dataset_column_names(train_dataset)
        if args.condition_column in column_names:
            return "embedding" if saved is not None and saved.mode == "embedding" else "text"
        if PartialState().is_main_process:
            logger.warning(
                f"Conditioning is off: the train dataset has no '{args.condition_column}' column (columns: "
                f"{column_names}), so condition_mode='auto' trains exactly as TRL's RewardTrainer. To condition the "
                "reward model on a domain or user, add that column or point `condition_column` at yours "
                "(condition_mode='auto' then renders it as text; 'embedding' learns soft tokens); set "
                "condition_mode='none' to silence this message."
            )
        return "none"

    @staticmethod
    def _build_spec(args, model, train_dataset, eval_dataset) -> ConditioningSpec:
        saved = getattr(model, "trl_custom_conditioning", None) if not isinstance(model, str) else None
        mode = CustomRewardTrainer._resolve_mode(args, saved, train_dataset)
        if mode == "none":
            return ConditioningSpec(mode="none", column=args.condition_column)
        conditions = args.conditions
        if saved is not None and saved.mode == mode == "embedding":
            if conditions is not None and list(conditions) != saved.conditions:
                raise ValueError(
                    f"The model's condition table was trained for conditions {saved.conditions}, but "
                    f"`conditions={list(conditions)}` was given. Leave `conditions` unset to continue training it."
                )
            if saved.in_text != args.condition_in_text:
                raise ValueError(f"The model was trained with condition_in_text={saved.in_text}: set it the same.")
            conditions = saved.conditions
        if conditions is None:
            conditions = CustomRewardTrainer._distinct_conditions(args, mode, train_dataset, "train")
            if mode == "text" and eval_dataset is not None:  # text mode: the vocabulary is for metrics
                eval_sets = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
                for dataset in eval_sets:
                    conditions = sorted(
                        set(conditions) | set(CustomRewardTrainer._distinct_conditions(args, mode, dataset, "eval"))
                    )
        return ConditioningSpec(
            mode=mode,
            column=args.condition_column,
            conditions=list(conditions),
            template=args.condition_template,
            num_tokens=args.num_condition_tokens,
            strict=args.strict_conditions,
            in_text=args.condition_in_text,
        )

    @staticmethod
    def _distinct_conditions(args, mode, dataset, name) -> list[str]:
        if dataset is None:
            return []
        column_names = get_dataset_column_names(dataset)
        if args.condition_column not in column_names:
            raise ValueError(
                f"The {name} dataset has no '{args.condition_column}' column (columns: {column_names}), but "
                f"condition_mode={mode!r} conditions on it. Add the column, set `condition_column` to "
                "the column holding the domain/user, or set `condition_mode='none'` (or 'auto')."
            )
        if isinstance(dataset, IterableDataset):
            if mode == "embedding":
                raise ValueError(
                    "An IterableDataset cannot be scanned for its condition values: pass `conditions=[...]` in the "
                    "config when training in embedding mode on a streaming dataset."
                )
            return []
        return sorted({str(v) for v in dataset[args.condition_column] if not is_missing_condition(v)})

    # ------------------------------------------------------------------ dataset
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """
        TRL's `_prepare_dataset` (legacy `chosen_input_ids` columns renamed with TRL's warning, EOS, chat templates,
        `tools` and `chat_template_kwargs`, tokenization, main process first, iterable datasets), with ours around
        it: before, the row checks and, in text mode, the condition rendered into the text columns; after, the
        condition ids, the imitation loss's `completion_start` and `long_pair_policy` (TRL's silent `max_length`
        filter is turned off for it).
        """
        spec = self.conditioning
        column_names = get_dataset_column_names(dataset)
        tokenized = {"chosen_ids", "rejected_ids"} <= set(column_names) or {
            "chosen_input_ids",
            "rejected_input_ids",
        } <= set(column_names)
        self._check_columns(column_names, tokenized, args, dataset_name)
        listwise = is_listwise_dataset(dataset, column_names, args.padding_free, dataset_name)
        if not tokenized:  # text or messages in prompt/chosen/rejected (a streamed row: as it is read)
            dataset = check_text_columns(dataset, dataset_name, listwise)
        map_kwargs = {"num_proc": args.dataset_num_proc} if isinstance(dataset, Dataset) else {}

        def desc(text):  # `IterableDataset.map` takes no `desc`
            return {"desc": f"{text} {dataset_name} dataset"} if isinstance(dataset, Dataset) else {}

        if listwise:  # one pair per rejected response through TRL's preparation, regrouped below
            column = "rejected_ids" if "rejected_ids" in column_names else "rejected"
            check_listwise_rows(dataset, dataset_name, column)
            with global_then_local_main_first():
                dataset = dataset.map(
                    explode_listwise,
                    batched=True,
                    with_indices=True,
                    fn_kwargs={"column": column},
                    remove_columns=column_names,
                    **map_kwargs,
                    **desc("One pair per rejected response of the"),
                )
        if isinstance(dataset, Dataset):
            validate_rows(dataset, get_dataset_column_names(dataset), dataset_name, spec)

        with global_then_local_main_first():
            if isinstance(dataset, IterableDataset) and not tokenized:  # checked as the rows are read
                dataset = dataset.map(check_row, with_indices=True, fn_kwargs={"dataset_name": dataset_name})
            if spec.renders_text and not tokenized:
                dataset = dataset.map(
                    render_condition_columns,
                    fn_kwargs={"spec": spec},
                    **map_kwargs,
                    **desc(f"Rendering '{spec.column}' into the"),
                )
        trl_args = copy.copy(args)
        trl_args.max_length = None  # long pairs follow `long_pair_policy` below, with counts
        dataset = super()._prepare_dataset(dataset, without_missing_eos(processing_class), trl_args, dataset_name)
        with global_then_local_main_first():
            if spec.mode != "none" and "condition_ids" not in column_names:
                dataset = dataset.map(
                    condition_id,
                    with_indices=True,
                    fn_kwargs={"spec": spec, "dataset_name": dataset_name},
                    **map_kwargs,
                    **desc(f"Mapping '{spec.column}' to condition ids in the"),
                )
            needs_start = args.imitation_coef > 0 or args.max_prompt_length is not None
            if needs_start and "completion_start" not in column_names:
                dataset = dataset.map(
                    completion_start,
                    fn_kwargs={"tokenizer": processing_class},
                    **map_kwargs,
                    **desc("Locating the chosen completions of the"),
                )
            dataset = enforce_max_length(
                dataset,
                args.max_length,
                args.long_pair_policy,
                dataset_name,
                truncation_mode=args.truncation_mode,
                max_prompt_length=None if "condition_ids" in column_names else args.max_prompt_length,
            )
            if listwise:
                dataset = regroup_listwise(dataset)
        return dataset

    def _check_columns(self, column_names, tokenized, args, dataset_name) -> None:
        spec = self.conditioning
        # `condition_ids` present: prepared by this trainer already (e.g. `trainer.eval_dataset` given to `evaluate`)
        prepared = "condition_ids" in column_names
        if tokenized:
            if spec.renders_text and not prepared:
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
        if spec.mode != "none" and spec.column not in column_names and not prepared:
            raise ValueError(
                f"The {dataset_name} dataset has no '{spec.column}' column (columns: {column_names}), but "
                f"condition_mode={spec.mode!r} conditions on it. Add the column, set `condition_column`, or set "
                "`condition_mode='none'`."
            )

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin"]
            if self.conditioning.mode != "none":
                self._signature_columns.append("condition_ids")
            if self.args.imitation_coef > 0:
                self._signature_columns.append("completion_start")

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """
        TRL's `compute_loss` (Bradley-Terry loss with the `margin` column, `center_rewards_coefficient`, TRL's
        metrics), with ours around it when a feature of ours is on: the condition's soft tokens (embedding mode),
        `margin_coef`, the imitation loss and the `ranking_loss`, `accuracy/<condition>` and `imitation_loss` metrics.
        Without any, the batch goes to TRL's `compute_loss` untouched. Padding-free batches have their own forward
        (see [`~trl_custom.conditioned_rm.conditioning.packed_reward_forward`]).
        """
        condition_ids = inputs.pop("condition_ids", None)
        completion_mask = inputs.pop("completion_mask", None)
        self._check_batch(condition_ids, completion_mask)
        if "rejected_group" in inputs:
            return self._listwise_compute_loss(model, inputs, condition_ids, completion_mask, return_outputs)
        if self.args.padding_free:
            return self._packed_compute_loss(model, inputs, condition_ids, completion_mask, return_outputs)
        imitation = self.args.imitation_coef > 0
        table = self.condition_table
        if condition_ids is None and table is None and not imitation and self._margin_coef(inputs) == 1.0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        mode = "train" if self.model.training else "eval"
        condition_ids = self._maybe_drop_conditions(condition_ids, mode)
        batch = conditioned_inputs(
            self.accelerator.unwrap_model(model),
            table,
            inputs["input_ids"],
            inputs["attention_mask"],
            condition_ids=condition_ids.repeat(2) if (table is not None and condition_ids is not None) else None,
            completion_mask=completion_mask,
        )
        model_inputs = {**batch["model_inputs"], "attention_mask": batch["attention_mask"]}
        margin = None
        if "margin" in inputs:
            margin = model_inputs["margin"] = self._margin_coef(inputs) * inputs["margin"]
        if imitation:
            model_inputs["output_hidden_states"] = True
        tokens_before = self._total_train_tokens
        loss, outputs = super().compute_loss(model, model_inputs, True, num_items_in_batch)
        if table is not None and mode == "train":  # TRL counted the soft tokens too: count the dataset's tokens
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens = tokens_before + tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        rewards = outputs.logits.squeeze(-1)
        imitation_loss = None
        if imitation:
            hidden = outputs.hidden_states[-1]
            imitation_loss = self._imitation_loss(model, hidden, batch["input_ids"], batch["completion_mask"])
            loss = loss + self.args.imitation_coef * imitation_loss
        log_our_metrics(self, mode, *rewards.chunk(2), margin, condition_ids, imitation_loss)
        outputs = SequenceClassifierOutput(logits=outputs.logits)  # the rewards (not the hidden states) for metrics
        return (loss, outputs) if return_outputs else loss

    def _check_batch(self, condition_ids, completion_mask) -> None:
        """A `data_collator` of the caller's must give what the features that are on read from the batch."""
        fix = "Leave `data_collator` unset (DataCollatorForConditionedPreference), or have yours add it."
        if self.condition_table is not None and condition_ids is None:
            raise ValueError(
                "The batch has no 'condition_ids', from which condition_mode='embedding' reads each pair's condition "
                f"(without them every pair would be trained as the generic one). {fix}"
            )
        if self.args.imitation_coef > 0 and completion_mask is None:
            raise ValueError(f"The batch has no 'completion_mask', needed by imitation_coef > 0. {fix}")

    def _margin_coef(self, inputs) -> float:
        return self.args.margin_coef if "margin" in inputs else 1.0

    def _maybe_drop_conditions(self, condition_ids, mode):
        """`condition_dropout`: in training, each pair's condition replaced by the generic entry with that chance."""
        if condition_ids is None or mode != "train" or self.args.condition_dropout <= 0:
            return condition_ids
        dropped = torch.rand(condition_ids.shape, device=condition_ids.device) < self.args.condition_dropout
        return condition_ids.masked_fill(dropped, 0)

    def _packed_compute_loss(self, model, inputs, condition_ids, completion_mask, return_outputs):
        """The loss and metrics of `compute_loss` on a padding-free batch (TRL's reads the padded model outputs)."""
        mode = "train" if self.model.training else "eval"
        condition_ids = self._maybe_drop_conditions(condition_ids, mode)
        table = self.condition_table
        imitation = self.args.imitation_coef > 0
        forward = reward_forward(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            condition_ids=condition_ids.repeat(2) if (table is not None and condition_ids is not None) else None,
            table=table,
            completion_mask=completion_mask,
            output_hidden_states=imitation,
            base_model=self.accelerator.unwrap_model(model),
            padding_free=True,
        )
        rewards = forward["rewards"]
        rewards_chosen, rewards_rejected = torch.chunk(rewards, chunks=2)
        margin = self.args.margin_coef * inputs["margin"] if "margin" in inputs else None
        logits = rewards_chosen - rewards_rejected - (margin if margin is not None else 0.0)
        loss = -nn.functional.logsigmoid(logits).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        imitation_loss = None
        if imitation:
            imitation_loss = self._imitation_loss(
                model, forward["hidden"], forward["input_ids"], forward["completion_mask"]
            )
            loss = loss + self.args.imitation_coef * imitation_loss
        log_trl_metrics(self, mode, inputs["attention_mask"], rewards_chosen, rewards_rejected)
        log_our_metrics(self, mode, rewards_chosen, rewards_rejected, margin, condition_ids, imitation_loss)
        outputs = SequenceClassifierOutput(logits=rewards.unsqueeze(-1))
        return (loss, outputs) if return_outputs else loss

    def _listwise_compute_loss(self, model, inputs, condition_ids, completion_mask, return_outputs):
        """
        The Plackett–Luce top-1 loss of listwise batches (see [`~trl_custom.conditioned_rm.listwise`]), with the
        `margin` column, `center_rewards_coefficient` (over every chosen/rejected pair), the imitation loss and the
        metrics of the pairwise path (`accuracy` and `margin` over every chosen/rejected pair, plus `top1_accuracy`).
        """
        mode = "train" if self.model.training else "eval"
        group = inputs["rejected_group"]
        num_chosen = inputs["input_ids"].shape[0] - group.shape[0]
        condition_ids = self._maybe_drop_conditions(condition_ids, mode)
        table = self.condition_table
        imitation = self.args.imitation_coef > 0
        row_conditions = None
        if table is not None and condition_ids is not None:
            row_conditions = torch.cat([condition_ids, condition_ids[group]])
        batch = conditioned_inputs(
            self.accelerator.unwrap_model(model),
            table,
            inputs["input_ids"],
            inputs["attention_mask"],
            condition_ids=row_conditions,
            completion_mask=completion_mask,
        )
        outputs = model(
            **batch["model_inputs"],
            attention_mask=batch["attention_mask"],
            use_cache=False,
            output_hidden_states=imitation,
        )
        rewards = outputs.logits.squeeze(-1)
        chosen, rejected = rewards[:num_chosen], rewards[num_chosen:]
        margin = self.args.margin_coef * inputs["margin"] if "margin" in inputs else None
        ranking_loss = plackett_luce_top1_loss(chosen, rejected, group, margin).mean()
        loss = ranking_loss
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen[group] + rejected) ** 2)
        imitation_loss = None
        if imitation:
            imitation_loss = self._imitation_loss(
                model, outputs.hidden_states[-1], batch["input_ids"], batch["completion_mask"], num_chosen
            )
            loss = loss + self.args.imitation_coef * imitation_loss
        log_trl_metrics(self, mode, inputs["attention_mask"], chosen, rejected, group)
        log_our_metrics(self, mode, chosen, rejected, margin, condition_ids, imitation_loss, group, ranking_loss)
        outputs = SequenceClassifierOutput(logits=rewards.unsqueeze(-1))
        return (loss, outputs) if return_outputs else loss

    def _imitation_loss(self, model, hidden, input_ids, completion_mask, num_chosen=None) -> torch.Tensor:
        """LM loss on the chosen responses' completion tokens (prompt masked), computed chunked over the LM head."""
        half = hidden.shape[0] // 2 if num_chosen is None else num_chosen
        hidden, input_ids, mask = hidden[:half], input_ids[:half], completion_mask[:half]
        predicts = mask[:, 1:].bool()  # position t predicts token t+1
        weight = lm_head_weight(self.accelerator.unwrap_model(model))
        return chunked_lm_loss(
            hidden[:, :-1][predicts], weight, input_ids[:, 1:][predicts], self.args.imitation_chunk_size
        )

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
        if self.args.should_save:  # an adapter folder has no config.json to hold the truncation and pooling
            save_adapter_settings(self.accelerator.unwrap_model(self.model), output_dir)
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
