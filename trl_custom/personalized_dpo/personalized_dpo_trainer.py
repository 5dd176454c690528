# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import contextlib
import logging
from dataclasses import fields

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import global_then_local_main_first

from .. import trl_seams
from ..checkpointing import SoftTokenCheckpointing
from ..data.checks import check_text_columns
from ..models import uses_zero3
from ..packing import VARLEN_PACKING_ATTENTION, attention_implementation, check_packable
from ..record import ModelRecord
from ..soft_tokens import (
    ConditioningSpec,
    SoftTokens,
    attach_soft_tokens,
    new_soft_tokens,
    soft_token_forward,
)
from ..soft_tokens.module import with_own_learning_rate
from ..soft_tokens.policy import (
    check_user_columns,
    personalized_args,
    policy_spec,
    resolve_personalization,
    saved_user_model,
)
from .collator import MAX_USERS_WITH_METRICS, USER_KEYS, DataCollatorForPersonalizedPreference, check_value, group_of
from .personalized_dpo_config import DPO_PERSONALIZATION_OPTIONS, PersonalizedDPOConfig


logger = logging.getLogger(__name__)


class PersonalizedDPOTrainer(SoftTokenCheckpointing, DPOTrainer):
    """
    Personalized DPO (P-DPO, from "Personalized Language Modeling from Personalized Human Feedback", Li, Lipton,
    Leqi) as a subclass of TRL's [`~trl.DPOTrainer`].

    A drop-in for `DPOTrainer`: a dataset without the user column (`condition_column`, default `"user_id"`) trains
    exactly as `DPOTrainer` does (same losses, metrics and saved files, plus the model's record `trl_custom.json`; one
    log line says so). With the column, a user model ([`~trl_custom.soft_tokens.SoftTokens`], `condition_model`)
    maps each pair's user (and optional user features) to soft tokens (a shared generic part + an individual part)
    that are prepended to the policy's input, and the loss is

        alpha * L(personalized policy) + (1 - alpha) * L(policy with the generic user's tokens)

    where `L` is TRL's own DPO loss, run unchanged (`DPOTrainer._compute_loss`): every `loss_type` and list of them
    with `loss_weights`, f-divergences, `label_smoothing`, `ld_alpha`, `use_weighting` and the MoE auxiliary loss
    personalize. The user tokens enter through forward hooks on the policy (see
    [`~trl_custom.soft_tokens.soft_token_forward`]); the reference model is the non-personalized base (no soft
    tokens): its log-probs come from TRL's `compute_ref_log_probs`, once per batch, and reach TRL's loss as
    precomputed reference log-probs. Unknown users get the generic tokens (or an error with `strict_conditions=True`).

    Works with any `AutoModelForCausalLM` that accepts `inputs_embeds`, full fine-tuning (with `ref_model`, or
    reloaded from the model's path as in TRL), LoRA/QLoRA (the user model is trained and saved next to the adapter),
    gradient checkpointing, `precompute_ref_log_probs` and padding-free batches (`padding_free=True`, which TRL 1.16's
    `DPOTrainer` turns off: here the policy and reference passes are packed). Metrics: TRL's, plus
    `rewards/accuracies/<group>` per user group (users outside the table: `unseen`) and, with
    `generic_loss_mode="exact"`, the generic-user pass's under `generic/...`.

    Every `checkpoint-N/` folder holds the policy (or adapter), `soft_tokens.safetensors` + the record, the optimizer,
    scheduler, RNG and trainer state: `trainer.train(resume_from_checkpoint=...)` (a path or `True`) restores the user
    model with the rest, and refuses a checkpoint written for other users.

    Args:
        model, ref_model, data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks,
        optimizers, quantization_config, peft_config:
            As in [`~trl.DPOTrainer`]. A model loaded with [`load_personalized_model`] (or a folder saved by this
            trainer) continues with its user model; users of the training set it does not know are added to it.
        args ([`PersonalizedDPOConfig`], *optional*): Configuration. A plain [`~trl.DPOConfig`] is accepted and means
            `condition_mode="none"`.
        soft_tokens ([`~trl_custom.soft_tokens.SoftTokens`], *optional*): A trained user model to continue from;
            by default the model's own, or a new one built from the training set's users.
    """

    _tag_names = ["trl", "dpo", "trl-custom", "p-dpo"]
    _name = "Personalized DPO"

    def __init__(
        self,
        model,
        ref_model=None,
        args=None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        soft_tokens: SoftTokens | None = None,
        **kwargs,
    ):
        if "user_model" in kwargs:
            raise TypeError("PersonalizedDPOTrainer: `user_model` was renamed `soft_tokens` (the same module).")
        args = personalized_args(args, model, PersonalizedDPOConfig, DPOConfig, "PersonalizedDPO")
        saved, soft_tokens = saved_user_model(model, soft_tokens)
        self.personalized = resolve_personalization(
            args, type(self).__name__, train_dataset, eval_dataset, DPO_PERSONALIZATION_OPTIONS
        )
        if self.personalized and args.generic_loss_mode == "exact" and 0.0 < args.alpha < 1.0 and uses_zero3(args):
            raise ValueError(
                "generic_loss_mode='exact' runs the policy twice per batch (the users' tokens, then the generic "
                "user's), and DeepSpeed ZeRO-3 cannot reduce a parameter's gradient from two forward passes in one "
                "backward. Use generic_loss_mode='sampled' (the default: an unbiased estimate of the same loss in one "
                "pass), alpha=1.0, or ZeRO-2 / DDP / FSDP2."
            )
        if self.personalized and args.sync_ref_model:
            raise ValueError(
                "sync_ref_model=True (TR-DPO) is not supported with personalization: TRL's SyncRefModelCallback "
                "copies the policy's parameters into the reference one by one, and the personalized policy also "
                "carries the user model. Set sync_ref_model=False, or train without the user column (plain DPO)."
            )
        self.conditioning = ConditioningSpec(mode="none", column=args.condition_column)
        if self.personalized:
            self.conditioning = policy_spec(args, saved, soft_tokens, train_dataset)
        self._group_names: list[str] = []
        with _padding_free_hidden_from_trl(args):
            super().__init__(
                model,
                ref_model=ref_model,
                args=args,
                data_collator=data_collator,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                **kwargs,
            )
        policy = self.accelerator.unwrap_model(self.model)
        self.record = ModelRecord(
            kind="policy",
            conditioning=self.conditioning,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            trainer=type(self).__name__,
            base_model=model if isinstance(model, str) else trl_seams.name_or_path(policy),
        ).attach(policy)
        self.padding_free = args.padding_free
        if self.padding_free:
            check_packable(policy)
            if self.ref_model is not None:
                check_packable(self.accelerator.unwrap_model(self.ref_model))
        self.soft_tokens = None
        if not self.personalized:
            return
        if trl_seams.is_vision_dataset(self):
            raise ValueError(
                "PersonalizedDPOTrainer personalizes text-only policies; this dataset has images. Train it without "
                f"the '{args.condition_column}' column (condition_mode='none'), or use a text-only dataset."
            )
        if data_collator is None and type(self.data_collator) is DataCollatorForPreference:
            collator = self.data_collator  # TRL's, built from the tokenizer and config: the same, plus the users
            self.data_collator = DataCollatorForPersonalizedPreference(
                **{f.name: getattr(collator, f.name) for f in fields(collator) if f.init}
            )
        if soft_tokens is None:
            soft_tokens = new_soft_tokens(policy, self.conditioning.tokens, len(self.conditioning.conditions))
        else:
            self.conditioning.tokens = soft_tokens.config
            soft_tokens.extend_to(len(self.conditioning.conditions))  # users new to the model: generic at first
        self.soft_tokens = attach_soft_tokens(policy, soft_tokens)  # after PEFT wrapping: trained, in the optimizer

    # ------------------------------------------------------------------ data
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = check_text_columns(dataset, dataset_name)  # text or messages (a streamed row: as it is read)
        columns = get_dataset_column_names(dataset)
        checked = [c for c in ("chosen", "rejected") if c in columns]
        if self.personalized:
            checked += list(args.condition_feature_columns or [])
        if isinstance(dataset, Dataset):  # every row now, before training
            for column in checked:
                for index, value in enumerate(dataset[column]):
                    check_value(column, value, index, dataset_name, args)
        elif checked:  # streaming: each row as it is read

            def check_row(example, index):
                for column in checked:
                    check_value(column, example[column], index, dataset_name, args)
                return example

            dataset = dataset.map(check_row, with_indices=True)
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.personalized:
            return dataset
        if args.condition_column not in get_dataset_column_names(dataset):  # e.g. a dataset given to evaluate()
            check_user_columns(args, dataset, dataset_name)
        spec, group_column, features = self.conditioning, args.group_column, args.condition_feature_columns
        by_user = group_column is None and len(spec.conditions) <= MAX_USERS_WITH_METRICS
        if isinstance(dataset, Dataset) and (group_column or by_user):  # group names, seen and unseen, up front
            values = dataset[group_column or spec.column]
            names = {group_of(v, spec, group_column) for v in values}
            self._group_names += sorted(n for n in names if n not in self._group_names)
        group_names = list(self._group_names) if (group_column or by_user) else []

        def add_user(example, index):
            where = f" in row {index} of the {dataset_name} dataset"
            output = {"user_ids": spec.condition_id(example[spec.column], where)}
            if features:
                output["user_features"] = [float(example[c]) for c in features]
            value = example[group_column or spec.column]
            group = group_of(value, spec, group_column) if group_names else None
            output["user_groups"] = group_names.index(group) if group in group_names else -1
            return output

        map_kwargs = {"desc": f"Mapping users of the {dataset_name} dataset"} if isinstance(dataset, Dataset) else {}
        with global_then_local_main_first():
            return dataset.map(add_user, with_indices=True, **map_kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.personalized:
            columns = trl_seams.signature_columns(self)
            trl_seams.set_signature_columns(self, list(columns) + [k for k in USER_KEYS if k not in columns])

    # ------------------------------------------------------------------ loss
    def _hooked(self, model, soft_tokens=None):
        """TRL's forward passes of `model` inside the block get `soft_tokens` in front and are packed with
        `padding_free` (see [`~trl_custom.soft_tokens.soft_token_forward`])."""
        unwrapped = self.accelerator.unwrap_model(model)
        pack = getattr(self, "padding_free", False)  # TRL's __init__ (precomputing) runs before it is set
        if soft_tokens is None and not pack:
            return contextlib.nullcontext(_NoHooks())
        return soft_token_forward(
            unwrapped,
            soft_tokens,
            pack=pack,
            single_row=attention_implementation(unwrapped) in VARLEN_PACKING_ATTENTION,
        )

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs, of the non-personalized base: the user keys never reach it. Packed with
        `padding_free`."""
        inputs = {k: v for k, v in inputs.items() if k not in USER_KEYS}
        with self._hooked(model):
            return super().compute_ref_log_probs(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """
        TRL's DPO loss (`DPOTrainer.compute_loss`) of the personalized policy, α-mixed with the generic user's.
        Without personalization and packing, exactly TRL's.
        """
        if not self.personalized and not self.padding_free:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        users = {k: inputs[k] for k in USER_KEYS if k in inputs}
        inputs = {k: v for k, v in inputs.items() if k not in USER_KEYS}
        if not self.precompute_ref_logps:
            # The frozen reference model when there is one (full fine-tuning); else the policy itself, which TRL's
            # method runs with the LoRA adapter switched off. Computed once, for every pass below.
            reference = self.ref_model if self.ref_model is not None else model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
            inputs = {**inputs, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
        with _reference_given(self):
            if not self.personalized:
                with self._hooked(model):
                    return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            personal, generic = self._user_tokens(users, mode)
            loss = 0.0
            if generic is not None:  # generic_loss_mode="exact": its own pass, its metrics under generic/...
                with _metrics_under(self, mode, "generic/"), self._hooked(model, torch.cat([generic, generic])):
                    loss = (1.0 - self.args.alpha) * super().compute_loss(model, inputs, False, num_items_in_batch)
            with self._hooked(model, torch.cat([personal, personal])) as hooks:
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self._log_group_accuracy(mode, inputs, hooks.log_probs, users.get("user_groups"))
        personal_loss, outputs = result if return_outputs else (result, None)
        loss = loss + (self.args.alpha if generic is not None else 1.0) * personal_loss
        return (loss, outputs) if return_outputs else loss

    def _user_tokens(self, users, mode):
        """
        `(personal, generic)` soft tokens `(B, K, H)`: with `generic_loss_mode="exact"` (0 < alpha < 1) both, for two
        passes; otherwise one tensor, the generic user's tokens for the pairs sampled with probability 1 - alpha
        (training only: evaluation reports each row's own user), and `None`.
        """
        if "user_ids" not in users:
            raise KeyError(
                "The batch has no 'user_ids': the data collator dropped the users. Use "
                "DataCollatorForPersonalizedPreference (the default), or keep the 'user_ids' key in your collator."
            )
        user_ids, features = users["user_ids"], users.get("user_features")
        alpha = self.args.alpha
        # One call for the users and the generic user (id 0), so that ZeRO-3 gathers the user model's weights.
        both = self.soft_tokens(
            torch.cat([user_ids, torch.zeros_like(user_ids)]), None if features is None else features.repeat(2, 1)
        )
        personal, generic = both.chunk(2)
        if self.args.generic_loss_mode == "exact" and 0.0 < alpha < 1.0:
            return personal, generic
        if alpha == 1.0 or alpha == 0.0:
            use_generic = torch.full_like(user_ids, alpha == 0.0, dtype=torch.bool)
        elif mode == "train":
            use_generic = torch.rand(user_ids.shape, device=user_ids.device) >= alpha
        else:
            use_generic = torch.zeros_like(user_ids, dtype=torch.bool)
        return torch.where(use_generic[:, None, None], generic, personal), None

    def _log_group_accuracy(self, mode, inputs, per_token_logps, groups):
        """`rewards/accuracies/<group>`: TRL's reward accuracy (β x log-ratio, chosen over rejected) per user group.
        The length-desensitized sum (`ld_alpha`) mirrors TRL's (fingerprinted in `trl_custom.trl_seams`)."""
        if groups is None or not self._group_names or per_token_logps is None:
            return
        shift_mask = inputs["completion_mask"][:, 1:]
        per_token_logps = per_token_logps[:, -shift_mask.shape[1] :] * shift_mask
        if self.ld_alpha is None:
            logps = per_token_logps.sum(dim=1)
        else:  # TRL's length-desensitized sum: the tokens past the shorter response's length weighted by ld_alpha
            position = shift_mask.cumsum(dim=1)
            shared = torch.minimum(*shift_mask.sum(dim=1).chunk(2)).repeat(2).unsqueeze(1)
            logps = (per_token_logps * (position <= shared)).sum(1) + self.ld_alpha * (
                per_token_logps * (position > shared)
            ).sum(1)
        chosen, rejected = logps.chunk(2)
        correct = (chosen - inputs["ref_chosen_logps"]) > (rejected - inputs["ref_rejected_logps"])
        gather = self.accelerator.gather_for_metrics
        metrics = trl_seams.metrics(self, mode)
        for group, flag in zip(gather(groups).tolist(), gather(correct.float()).tolist(), strict=True):
            if group >= 0:
                metrics[f"rewards/accuracies/{self._group_names[group]}"].append(flag)

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the user model in its own group when `condition_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.soft_tokens is None or self.is_deepspeed_enabled:  # DeepSpeed builds its optimizer from its config
            return optimizer
        return with_own_learning_rate(optimizer, self.soft_tokens, self.args.condition_learning_rate)


class _NoHooks:
    log_probs = None


@contextlib.contextmanager
def _padding_free_hidden_from_trl(args: PersonalizedDPOConfig):
    """TRL 1.16's `DPOTrainer` warns that `padding_free` is disabled and turns it off; this trainer implements it, so
    TRL's `__init__` sees `padding_free=False` and the user's value is restored afterwards."""
    padding_free = args.padding_free
    args.padding_free = False
    try:
        yield
    finally:
        args.padding_free = padding_free


@contextlib.contextmanager
def _reference_given(trainer: PersonalizedDPOTrainer):
    """TRL's `_compute_loss` reads the reference log-probs from the batch (its `precompute_ref_log_probs` path)
    inside the block: `compute_loss` has put the non-personalized reference's there, computed once for every pass."""
    precompute = trainer.precompute_ref_logps
    trainer.precompute_ref_logps = True
    try:
        yield
    finally:
        trainer.precompute_ref_logps = precompute


@contextlib.contextmanager
def _metrics_under(trainer: PersonalizedDPOTrainer, mode: str, prefix: str):
    """The metrics TRL logs inside the block go under `prefix` (the generic-user pass of the exact α-mix), and its
    tokens are not counted twice."""
    metrics = trl_seams.metrics(trainer, mode)
    before = {key: len(values) for key, values in metrics.items()}
    tokens = trl_seams.total_train_tokens(trainer)
    try:
        yield
    finally:
        for key in list(metrics):
            new = metrics[key][before.get(key, 0) :]
            if key == "num_tokens" or not new:
                continue
            del metrics[key][before.get(key, 0) :]
            metrics[f"{prefix}{key}"].extend(new)
            if not metrics[key]:
                del metrics[key]
        trl_seams.set_total_train_tokens(trainer, tokens)
        metrics["num_tokens"] = [tokens]
