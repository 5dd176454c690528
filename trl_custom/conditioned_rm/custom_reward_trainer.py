# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import copy
import logging
import os
from dataclasses import fields

import torch
from accelerate import PartialState
from datasets import Dataset, IterableDataset
from transformers.modeling_outputs import SequenceClassifierOutput
from trl import RewardTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.utils import global_then_local_main_first

from .. import trl_seams
from ..checkpointing import SoftTokenCheckpointing
from ..data.checks import check_text_columns
from ..models import uses_zero3
from ..packing import check_packable
from ..record import ModelRecord, has_record
from ..soft_tokens import ConditioningSpec, attach_soft_tokens, get_soft_tokens, is_missing, new_soft_tokens
from ..soft_tokens.module import with_own_learning_rate
from .collator import DataCollatorForConditionedPreference
from .conditioning import check_position_budget, reward_forward, reward_hooks, uses_last_token_pooling
from .custom_reward_config import AUTO_CONDITION_MODE, CONDITION_PLACEMENTS, CustomRewardConfig
from .encoding import completion_start, render_condition_columns, without_missing_eos
from .imitation import IMITATION_CHUNK_SIZE, chunked_lm_loss, lm_head_weight
from .listwise import (
    check_listwise_rows,
    explode_listwise,
    is_listwise_dataset,
    plackett_luce_top1_loss,
    regroup_listwise,
)
from .metrics import log_our_metrics, log_trl_metrics
from .preparation import check_row, condition_id, enforce_max_length, validate_rows
from .reward_head import apply_pooling, with_trained_reward_head


logger = logging.getLogger(__name__)


class CustomRewardTrainer(SoftTokenCheckpointing, RewardTrainer):
    """
    Reward trainer for *customized* reward models (DSP, "Everyone Deserves A Reward"): one reward model conditioned on
    a domain or user, with customized preference imitation.

    A drop-in subclass of TRL's [`~trl.RewardTrainer`]: it takes the same arguments and datasets (standard or
    conversational, explicit or implicit prompt, iterable, pre-tokenized, `tools`, `margin`), prepares them with TRL's
    own `_prepare_dataset` and computes the loss and metrics with TRL's own `compute_loss` (tested step by step
    against it; with the default `condition_mode="auto"` on a dataset without a `condition_column` column, it is
    TRL's trainer). On top of it:

    - **conditioning** on `args.condition_column` (text, soft tokens or both, see [`CustomRewardConfig`]): the soft
      tokens enter TRL's forward through hooks (see [`~trl_custom.soft_tokens.soft_token_forward`]);
    - **imitation loss**: `imitation_coef` x LM loss on the chosen response tokens (causal-LM backbones);
    - **listwise rows**: a list of rejected responses per row trains the Plackett–Luce top-1 loss (one softmax per
      row, see [`~trl_custom.conditioned_rm.listwise`]), the pairwise loss for one rejected response;
    - tokenizers without EOS (BERT, MiniLM) and pairs longer than `max_length` (cut, dropped or refused, and counted)
      are handled;
    - a PEFT config that would leave the reward head frozen (no `task_type="SEQ_CLS"`) gets the head added to its
      `modules_to_save`, with a warning;
    - metrics: `accuracy/<condition>` per condition value (`accuracy/<value> (unseen)` for values not trained on,
      `accuracy/dropped` for `condition_dropout`), `ranking_loss`, `imitation_loss`;
    - **padding-free batches** (`padding_free=True`): chosen and rejected sequences packed without padding, with the
      same rewards and losses (decoder reward models).

    `trainer.save_model(dir)` writes the model, the record of how it reads its inputs (`trl_custom.json`) and its
    soft tokens; reload for scoring with [`~trl_custom.RewardScorer.from_pretrained`]. Every `checkpoint-N/` folder
    holds the same files plus the optimizer, scheduler, RNG and trainer state: `trainer.train(resume_from_checkpoint=
    ...)` (a path or `True`) restores the soft tokens with the rest, and refuses a checkpoint of other conditions.

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
            with its soft tokens, `args.model_init_kwargs` and `quantization_config` applied as TRL applies them
            (dtype float32 unless given). With PEFT, the soft tokens are trained and saved beside the adapter.
        args ([`CustomRewardConfig`], *optional*):
            Configuration. A plain [`~trl.RewardConfig`] is accepted and means `condition_mode="none"`.
    """

    _tag_names = ["trl", "reward-trainer", "trl-custom"]
    _name = "Custom Reward"

    def __init__(self, model, args=None, data_collator=None, train_dataset=None, eval_dataset=None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else trl_seams.name_or_path(model)
            args = CustomRewardConfig(f"{os.path.basename(str(name).rstrip('/'))}-CustomReward")
        elif not isinstance(args, CustomRewardConfig):
            values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
            args = CustomRewardConfig(**{**values, "condition_mode": "none"})
        if isinstance(model, str) and has_record(model):
            from .scoring import load_reward_model_for_training

            model, args = load_reward_model_for_training(model, args, kwargs)
        saved = None if isinstance(model, str) else ModelRecord.of(model).conditioning
        if kwargs.get("peft_config") is not None:
            kwargs["peft_config"] = with_trained_reward_head(kwargs["peft_config"], model, args)
        self.conditioning = self._build_spec(args, saved, train_dataset)
        self._metric_names = list(self.conditioning.names)  # + values met in other datasets (metrics only)
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
            model, args=args, data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
            **kwargs,
        )  # fmt: skip
        if self._owns_collator:
            self.data_collator.pad_token_id = self.processing_class.pad_token_id
        unwrapped = self.accelerator.unwrap_model(self.model)
        self.record = ModelRecord(
            kind="reward_model",
            conditioning=self.conditioning,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            max_prompt_length=args.max_prompt_length,
            pooling=args.pooling,
            trainer=type(self).__name__,
            base_model=model if isinstance(model, str) else trl_seams.name_or_path(unwrapped),
        ).attach(unwrapped)
        apply_pooling(unwrapped, args.pooling)
        self.soft_tokens = None
        if self.conditioning.uses_soft_tokens:
            self.soft_tokens = self._soft_tokens_of(unwrapped)
            check_position_budget(unwrapped.config, args.max_length, self.conditioning.tokens.num_input_tokens)
            held = {id(p) for group in getattr(self.optimizer, "param_groups", []) for p in group["params"]}
            if self.optimizer is not None and not all(id(p) in held for p in self.soft_tokens.parameters()):
                raise ValueError(
                    "The optimizer given in `optimizers` does not hold the soft tokens, which this trainer creates in "
                    "the embedding modes, so they would not train. Pass `optimizer_cls_and_kwargs` instead: the "
                    "trainer then builds the optimizer, with the soft tokens in it."
                )
        if args.padding_free:
            check_packable(unwrapped, decoder=uses_last_token_pooling(unwrapped))
        if args.imitation_coef > 0:
            if uses_zero3(args):
                raise ValueError(
                    "imitation_coef > 0 reads the LM head outside the model's forward, which DeepSpeed ZeRO-3 "
                    "partitions: train with ZeRO-2 (--accelerate_config deepspeed_zero2), DDP with LoRA/QLoRA, "
                    "or set imitation_coef: 0."
                )
            lm_head_weight(unwrapped)  # fail now, not at the first step, on backbones without an LM head

    def _soft_tokens_of(self, unwrapped):
        """The soft tokens of a model continued from a saved folder, or new ones; attached (trainable) either way."""
        module = get_soft_tokens(unwrapped)
        if module is None:
            module = new_soft_tokens(unwrapped, self.conditioning.tokens, len(self.conditioning.conditions))
        return attach_soft_tokens(unwrapped, module)  # after PEFT wrapping: trainable, seen by the optimizer

    # ------------------------------------------------------------------ conditioning vocabulary
    @staticmethod
    def _resolve_mode(args, saved: ConditioningSpec | None, train_dataset) -> str:
        """
        `args.condition_mode`, with `"auto"` resolved from the training dataset: `"text"` (the saved mode for a model
        saved with soft tokens) when it has the condition column, else `"none"` (TRL's `RewardTrainer`), said once.
        """
        if args.condition_mode != AUTO_CONDITION_MODE:
            return args.condition_mode
        if train_dataset is None:  # TRL refuses it
            return "none"
        column_names = get_dataset_column_names(train_dataset)
        if args.condition_column in column_names:
            return saved.mode if saved is not None and saved.uses_soft_tokens else "text"
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
    def _build_spec(args, saved: ConditioningSpec | None, train_dataset) -> ConditioningSpec:
        mode = CustomRewardTrainer._resolve_mode(args, saved, train_dataset)
        if mode == "none":
            return ConditioningSpec(mode="none", column=args.condition_column)
        conditions = args.conditions
        placement = CONDITION_PLACEMENTS[args.condition_placement]
        continued = saved is not None and saved.uses_soft_tokens and mode in ("embedding", "text+embedding")
        if continued:
            if mode != saved.mode:
                raise ValueError(f"The model was trained with condition_mode={saved.mode!r}: set it the same.")
            if args.condition_placement != "input" and saved.tokens.placement != placement:
                raise ValueError(
                    f"The model's conditions enter at placement {saved.tokens.placement!r} (its record), not "
                    f"{placement!r}: leave condition_placement unset to continue training them."
                )
            if conditions is not None and list(conditions) != saved.conditions:
                raise ValueError(
                    f"The model's soft tokens were trained for conditions {saved.conditions}, but "
                    f"`conditions={list(conditions)}` was given. Leave `conditions` unset to continue training them."
                )
            conditions = saved.conditions
        if conditions is None:  # the training set's values: what "seen in training" means
            conditions = CustomRewardTrainer._distinct_conditions(args, mode, train_dataset, "train")
        spec = args.conditioning_spec(mode, conditions, placement=placement, template=args.condition_template)
        if continued:
            spec.tokens = saved.tokens
        return spec

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
            if mode != "text":
                raise ValueError(
                    "An IterableDataset cannot be scanned for its condition values: pass `conditions=[...]` in the "
                    f"config when training in condition_mode={mode!r} on a streaming dataset."
                )
            return []
        return sorted({str(v) for v in dataset[args.condition_column] if not is_missing(v)})

    def _unseen_ids(self, dataset) -> dict[str, int]:
        """Ids past the vocabulary for the values of `dataset` not trained on (their soft tokens are the generic
        entry's; strict models refuse them), so that metrics name them apart: `accuracy/<value> (unseen)`."""
        spec = self.conditioning
        if not isinstance(dataset, Dataset) or spec.strict or spec.column not in dataset.column_names:
            return {}
        for value in spec.unknown_values(dataset[spec.column]):
            if f"{value} (unseen)" not in self._metric_names:
                self._metric_names.append(f"{value} (unseen)")
        return {
            name[: -len(" (unseen)")]: i for i, name in enumerate(self._metric_names) if name.endswith(" (unseen)")
        }

    # ------------------------------------------------------------------ dataset
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """
        TRL's `_prepare_dataset` (legacy `chosen_input_ids` columns renamed with TRL's warning, EOS, chat templates,
        `tools` and `chat_template_kwargs`, tokenization, main process first, iterable datasets), with ours around
        it: before, the row checks and, in the text modes, the condition rendered into the text columns; after, the
        condition ids, the imitation loss's `completion_start` and `truncation_mode` for pairs longer than
        `max_length` (TRL's silent `max_length` filter is turned off for it).
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
        trl_args.max_length = None  # long pairs follow `truncation_mode` below, with counts
        dataset = super()._prepare_dataset(dataset, without_missing_eos(processing_class), trl_args, dataset_name)
        with global_then_local_main_first():
            if spec.mode != "none" and "condition_ids" not in column_names:
                dataset = dataset.map(
                    condition_id,
                    with_indices=True,
                    fn_kwargs={"spec": spec, "dataset_name": dataset_name, "unseen": self._unseen_ids(dataset)},
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
                args.truncation_mode,
                dataset_name,
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
                    f"cannot be rendered into it (condition_mode={spec.mode!r}). Pass the raw text columns, or use "
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
        if trl_seams.signature_columns(self) is None:
            columns = ["chosen_ids", "rejected_ids", "margin"]
            if self.conditioning.mode != "none":
                columns.append("condition_ids")
            if self.args.imitation_coef > 0:
                columns.append("completion_start")
            trl_seams.set_signature_columns(self, columns)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """
        TRL's `compute_loss` (Bradley-Terry loss with the `margin` column, `center_rewards_coefficient`, TRL's
        metrics), run with the condition's soft tokens and/or packing hooked into its forward, plus ours when a
        feature of ours is on: the imitation loss and the `ranking_loss`, `accuracy/<condition>` and
        `imitation_loss` metrics. Without any, the batch goes to TRL's `compute_loss` untouched.
        """
        condition_ids = inputs.pop("condition_ids", None)
        completion_mask = inputs.pop("completion_mask", None)
        self._check_batch(condition_ids, completion_mask)
        if "rejected_group" in inputs:
            return self._listwise_compute_loss(model, inputs, condition_ids, completion_mask, return_outputs)
        imitation = self.args.imitation_coef > 0
        if condition_ids is None and self.soft_tokens is None and not imitation and not self.args.padding_free:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        mode = "train" if self.model.training else "eval"
        soft_ids, dropped = self._soft_token_ids(condition_ids, mode)
        soft = self.soft_tokens(soft_ids.repeat(2)) if self.soft_tokens is not None else None
        if imitation:
            inputs["output_hidden_states"] = True
        unwrapped = self.accelerator.unwrap_model(model)
        placement = self.conditioning.tokens.placement if soft is not None else "after_first"
        with reward_hooks(unwrapped, soft, self.args.padding_free, imitation, placement=placement):
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        rewards = outputs.logits.squeeze(-1)
        imitation_loss = None
        if imitation:
            hidden = outputs.hidden_states[-1]
            imitation_loss = self._imitation_loss(model, hidden, inputs["input_ids"], completion_mask)
            loss = loss + self.args.imitation_coef * imitation_loss
        log_our_metrics(self, mode, *rewards.chunk(2), inputs.get("margin"), condition_ids, dropped, imitation_loss)
        outputs = SequenceClassifierOutput(logits=outputs.logits)  # the rewards (not the hidden states) for metrics
        return (loss, outputs) if return_outputs else loss

    def _check_batch(self, condition_ids, completion_mask) -> None:
        """A `data_collator` of the caller's must give what the features that are on read from the batch."""
        fix = "Leave `data_collator` unset (DataCollatorForConditionedPreference), or have yours add it."
        if self.soft_tokens is not None and condition_ids is None:
            raise ValueError(
                "The batch has no 'condition_ids', from which the soft tokens read each pair's condition (without "
                f"them every pair would be trained as the generic one). {fix}"
            )
        if self.args.imitation_coef > 0 and completion_mask is None:
            raise ValueError(f"The batch has no 'completion_mask', needed by imitation_coef > 0. {fix}")

    def _soft_token_ids(self, condition_ids, mode):
        """
        The soft-token rows of a batch's condition ids (values not trained on: the generic entry, 0) and which pairs
        `condition_dropout` gave the generic entry in training (`None` when it is off).
        """
        if condition_ids is None:
            return None, None
        soft_ids = condition_ids.masked_fill(condition_ids > len(self.conditioning.conditions), 0)
        if mode != "train" or self.args.condition_dropout <= 0:
            return soft_ids, None
        dropped = torch.rand(condition_ids.shape, device=condition_ids.device) < self.args.condition_dropout
        return soft_ids.masked_fill(dropped, 0), dropped

    def _listwise_compute_loss(self, model, inputs, condition_ids, completion_mask, return_outputs):
        """
        The Plackett–Luce top-1 loss of listwise batches (see [`~trl_custom.conditioned_rm.listwise`]), with the
        `margin` column, `center_rewards_coefficient` (over every chosen/rejected pair), the imitation loss and the
        metrics of the pairwise path (`accuracy` and `margin` over every chosen/rejected pair, plus `top1_accuracy`).
        """
        mode = "train" if self.model.training else "eval"
        group = inputs["rejected_group"]
        num_chosen = inputs["input_ids"].shape[0] - group.shape[0]
        soft_ids, dropped = self._soft_token_ids(condition_ids, mode)
        imitation = self.args.imitation_coef > 0
        soft = None
        if self.soft_tokens is not None:
            soft = self.soft_tokens(torch.cat([soft_ids, soft_ids[group]]))
        forward = reward_forward(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            soft_tokens=soft,
            output_hidden_states=imitation,
            base_model=self.accelerator.unwrap_model(model),
            placement=self.conditioning.tokens.placement if soft is not None else "after_first",
        )
        rewards = forward["rewards"]
        chosen, rejected = rewards[:num_chosen], rewards[num_chosen:]
        margin = inputs.get("margin")
        ranking_loss = plackett_luce_top1_loss(chosen, rejected, group, margin).mean()
        loss = ranking_loss
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen[group] + rejected) ** 2)
        imitation_loss = None
        if imitation:
            imitation_loss = self._imitation_loss(
                model, forward["hidden"], inputs["input_ids"], completion_mask, num_chosen
            )
            loss = loss + self.args.imitation_coef * imitation_loss
        log_trl_metrics(self, mode, inputs["attention_mask"], chosen, rejected, group)
        log_our_metrics(
            self, mode, chosen, rejected, margin, condition_ids, dropped, imitation_loss, group, ranking_loss
        )
        outputs = SequenceClassifierOutput(logits=rewards.unsqueeze(-1))
        return (loss, outputs) if return_outputs else loss

    def _imitation_loss(self, model, hidden, input_ids, completion_mask, num_chosen=None) -> torch.Tensor:
        """LM loss on the chosen responses' completion tokens (prompt masked), computed chunked over the LM head."""
        half = hidden.shape[0] // 2 if num_chosen is None else num_chosen
        hidden, input_ids, mask = hidden[:half], input_ids[:half], completion_mask[:half]
        predicts = mask[:, 1:].bool()  # position t predicts token t+1
        weight = lm_head_weight(self.accelerator.unwrap_model(model))
        return chunked_lm_loss(hidden[:, :-1][predicts], weight, input_ids[:, 1:][predicts], IMITATION_CHUNK_SIZE)

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the soft tokens in their own group when `condition_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.soft_tokens is None or self.is_deepspeed_enabled:  # DeepSpeed builds its own optimizer
            return optimizer
        return with_own_learning_rate(optimizer, self.soft_tokens, self.args.condition_learning_rate)
