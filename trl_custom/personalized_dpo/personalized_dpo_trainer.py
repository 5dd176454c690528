# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import contextlib
import json
import logging
import math
import numbers
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from transformers import AutoTokenizer
from trl import DPOTrainer
from trl.data_utils import get_dataset_column_names
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import use_adapter

from ..attached_modules import input_embedding_stats, split_attached_state, with_own_learning_rate
from ..checkpointing import AttachedModuleCheckpointing, check_saved_state, load_saved_state
from ..data.preferences import is_empty_response
from ..packing import VARLEN_PACKING_ATTENTION, attention_implementation, check_packable, packed_token_log_probs
from .personalized_dpo_config import PersonalizedDPOConfig
from .user_model import (
    GENERIC_USER,
    USER_MODEL_ATTRIBUTE,
    USER_MODEL_CONFIG_FILE,
    USER_MODEL_WEIGHTS_FILE,
    UserModel,
    UserModelConfig,
    attach_user_model,
    lookup_user,
    prepend_user_tokens,
)


logger = logging.getLogger(__name__)
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


class PersonalizedDPOTrainer(AttachedModuleCheckpointing, DPOTrainer):
    """
    Personalized DPO (P-DPO, from "Personalized Language Modeling from Personalized Human Feedback", Li, Lipton,
    Leqi) as a subclass of TRL's [`~trl.DPOTrainer`].

    A [`UserModel`] maps each pair's `user_id` (and optional user features) to soft-token embeddings (a shared generic
    part + an individual part) that are prepended to the policy's input. The reference model is the
    non-personalized base (no soft tokens). The loss is

        alpha * DPO(personalized policy) + (1 - alpha) * DPO(policy with the generic user's tokens)

    with TRL's sigmoid DPO loss. Unknown users get the generic tokens (or an error with `strict_users=True`).

    Works with any `AutoModelForCausalLM` that accepts `inputs_embeds`, full fine-tuning (with `ref_model`, or
    reloaded from the model's path as in TRL), LoRA/QLoRA (the user model is trained and saved next to the adapter),
    gradient checkpointing, `precompute_ref_log_probs` and padding-free batches (`padding_free=True`, which TRL 1.16's
    `DPOTrainer` turns off: here the policy and reference passes are packed). Metrics: TRL's `rewards/*` plus
    `rewards/accuracies/<group>` per user group.

    Every `checkpoint-N/` folder holds the policy (or adapter), `user_model.safetensors` + `user_model.json`, the
    optimizer, scheduler, RNG and trainer state: `trainer.train(resume_from_checkpoint=...)` (a path or `True`)
    restores the user model with the rest, and refuses a checkpoint written for other users.

    Args:
        model, ref_model, data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks,
        optimizers, quantization_config, peft_config:
            As in [`~trl.DPOTrainer`]. Datasets need a `user_column` column.
        args ([`PersonalizedDPOConfig`], *optional*): Configuration.
        user_model ([`UserModel`], *optional*): A trained user model to continue from (e.g. from
            [`load_personalized_model`]); by default a new one is built from the training set's users.
    """

    _tag_names = ["trl", "dpo", "trl-custom", "p-dpo"]
    _name = "Personalized DPO"
    _attached_attribute = USER_MODEL_ATTRIBUTE

    def __init__(
        self,
        model,
        ref_model=None,
        args=None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        user_model: UserModel | None = None,
        **kwargs,
    ):
        if args is None:
            args = PersonalizedDPOConfig("personalized-dpo")
        if not isinstance(args, PersonalizedDPOConfig):
            raise TypeError(f"`args` must be a PersonalizedDPOConfig, got {type(args).__name__}.")
        self._check_user_column(args, train_dataset, "train")
        if eval_dataset is not None:
            for name, dataset in eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]:
                self._check_user_column(args, dataset, name)
        if user_model is None and isinstance(model, str) and os.path.isfile(os.path.join(model, "user_model.json")):
            user_model = UserModel.from_pretrained(model)
        users = list(user_model.config.users) if user_model is not None else self._distinct_users(args, train_dataset)
        self._users = users
        self._strict_users = args.strict_users
        self._user_index = {user: i + 1 for i, user in enumerate(users)}
        self._pending_user_model = user_model
        if processing_class is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            processing_class = AutoTokenizer.from_pretrained(name)
        if data_collator is None:
            tokenizer = getattr(processing_class, "tokenizer", processing_class)
            pad_token = args.pad_token or tokenizer.pad_token or tokenizer.eos_token
            tokenizer.pad_token = pad_token
            data_collator = DataCollatorForPersonalizedPreference(
                pad_token_id=tokenizer.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
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
        self.padding_free = args.padding_free
        if self.padding_free:
            check_packable(policy)
            if self.ref_model is not None:
                check_packable(self.accelerator.unwrap_model(self.ref_model))
        if self._pending_user_model is None:
            embeddings = input_embedding_stats(policy, with_std=True)
            self._pending_user_model = UserModel(
                UserModelConfig(
                    users=users,
                    hidden_size=embeddings.hidden_size,
                    num_tokens=args.num_user_tokens,
                    user_dim=args.user_dim,
                    user_model_type=args.user_model_type,
                    num_clusters=args.num_clusters,
                    num_features=len(args.user_feature_columns or []),
                    strict=args.strict_users,
                ),
                init_std=embeddings.std,
            )
        self.user_model = attach_user_model(policy, self._pending_user_model)
        del self._pending_user_model
        self._metrics.setdefault("train", defaultdict(list))

    # ------------------------------------------------------------------ users and data
    @staticmethod
    def _check_user_column(args, dataset, name):
        if dataset is None:
            return
        columns = get_dataset_column_names(dataset)
        if args.user_column not in columns:
            raise ValueError(
                f"The {name} dataset has no '{args.user_column}' column (columns: {columns}). P-DPO needs the user of "
                "each pair: add the column, or set `user_column` to the column holding the user id."
            )
        for column in args.user_feature_columns or []:
            if column not in columns:
                raise ValueError(
                    f"The {name} dataset has no user-feature column '{column}' (columns: {columns}). Add the column, "
                    "or remove it from `user_feature_columns`."
                )

    @staticmethod
    def _distinct_users(args, dataset) -> list[str]:
        if args.users is not None:
            return [str(u) for u in args.users]
        if isinstance(dataset, IterableDataset):
            raise ValueError("An IterableDataset cannot be scanned for its users: pass `users=[...]` in the config.")
        users = {str(u) for u in dataset[args.user_column] if u is not None and str(u) != ""}
        users.discard(GENERIC_USER)
        return sorted(users, key=lambda u: (len(u), u))  # numeric ids in numeric order

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        columns = get_dataset_column_names(dataset)
        checked = [c for c in ("chosen", "rejected") if c in columns] + list(args.user_feature_columns or [])
        if isinstance(dataset, Dataset):  # every row now, before training
            for column in checked:
                for index, value in enumerate(dataset[column]):
                    _check_value(column, value, index, dataset_name, args)
        elif checked:  # streaming: each row as it is read

            def check_row(example, index):
                for column in checked:
                    _check_value(column, example[column], index, dataset_name, args)
                return example

            dataset = dataset.map(check_row, with_indices=True)
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        groups = args.user_group_column
        if groups is None and len(self._users) <= MAX_USERS_WITH_METRICS:
            groups = args.user_column
        if groups is not None and not self._group_names and isinstance(dataset, Dataset):
            self._group_names = sorted({str(g) for g in dataset[groups]})

        def add_user(example, index):
            where = f" in row {index} of the {dataset_name} dataset"
            output = {"user_ids": lookup_user(self._user_index, example[args.user_column], self._strict_users, where)}
            if args.user_feature_columns:
                output["user_features"] = [float(example[c]) for c in args.user_feature_columns]
            if groups is not None and str(example[groups]) in self._group_names:
                output["user_groups"] = self._group_names.index(str(example[groups]))
            return output

        map_kwargs = {"desc": f"Mapping users of the {dataset_name} dataset"} if isinstance(dataset, Dataset) else {}
        return dataset.map(add_user, with_indices=True, **map_kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + [
            k for k in USER_KEYS if k not in self._signature_columns
        ]

    # ------------------------------------------------------------------ loss
    def compute_ref_log_probs(self, model, inputs):
        """Reference log-probs: the non-personalized base, so the user keys never reach it. Packed with
        `padding_free` (unless `ld_alpha` is set, which TRL computes on the padded batch)."""
        inputs = {k: v for k, v in inputs.items() if k not in USER_KEYS}
        if not self.padding_free or self.ld_alpha is not None:
            return super().compute_ref_log_probs(model, inputs)
        adapter_context = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):  # the base: the adapter disabled, as in TRL
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter_context = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter_context,
            self.accelerator.autocast(),
        ):
            per_token = packed_token_log_probs(
                model,
                inputs["attention_mask"],
                labels,
                single_row=self._single_packed_row(model),
                input_ids=inputs["input_ids"],
            )
        return per_token.sum(dim=1).chunk(2, dim=0)

    def _single_packed_row(self, model) -> bool:
        """FlashAttention reads packed sequences from one row only; masked attention packs into several."""
        return attention_implementation(self.accelerator.unwrap_model(model)) in VARLEN_PACKING_ATTENTION

    def policy_log_probs(self, model, input_ids, attention_mask, completion_mask, soft_tokens):
        """Summed completion log-probs of the policy with `soft_tokens` (`(rows, K, H)`) prepended to each sequence."""
        policy = self.accelerator.unwrap_model(model)
        inputs = prepend_user_tokens(policy, soft_tokens, input_ids, attention_mask)
        labels = input_ids.masked_fill(completion_mask == 0, -100)
        labels = torch.cat([labels.new_full((labels.shape[0], soft_tokens.shape[1]), -100), labels], dim=1)
        if self.padding_free:
            per_token = packed_token_log_probs(
                model,
                inputs["attention_mask"],
                labels,
                single_row=self._single_packed_row(model),
                inputs_embeds=inputs["inputs_embeds"],
            )
            return per_token.sum(dim=1)
        outputs = model(**inputs, labels=labels, fused_lm_head=True, use_cache=False)
        seq_len = input_ids.shape[1] - 1
        return outputs.log_probs[:, -seq_len:].sum(dim=1)  # the soft positions carry no label: they drop out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        user_ids = inputs["user_ids"]
        features = inputs.get("user_features")
        groups = inputs.get("user_groups")
        model_inputs = {k: v for k, v in inputs.items() if k not in USER_KEYS}
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = model_inputs["ref_chosen_logps"], model_inputs["ref_rejected_logps"]
        else:
            # The frozen reference model when there is one (full fine-tuning); else the policy itself, which TRL's
            # method runs with the LoRA adapter switched off.
            reference = self.ref_model if self.ref_model is not None else model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, model_inputs)

        alpha = self.args.alpha
        # One call for the users and the generic user (index 0), so that ZeRO-3 gathers the user model's weights.
        both = self.user_model(
            torch.cat([user_ids, torch.zeros_like(user_ids)]), None if features is None else features.repeat(2, 1)
        )
        personal, generic = both.chunk(2)  # (B, K, H) each
        if self.args.generic_loss_mode == "exact" and 0.0 < alpha < 1.0:
            variants = [personal, generic]
            weights = [alpha, 1.0 - alpha]
        else:
            if alpha == 1.0 or alpha == 0.0:
                use_generic = torch.full_like(user_ids, alpha == 0.0, dtype=torch.bool)
            elif mode == "train":
                use_generic = torch.rand(user_ids.shape, device=user_ids.device) >= alpha
            else:  # evaluation reports the personalized policy
                use_generic = torch.zeros_like(user_ids, dtype=torch.bool)
            variants = [torch.where(use_generic[:, None, None], generic, personal)]
            weights = [1.0]
        soft = torch.cat([torch.cat([v, v]) for v in variants])  # each variant over [chosen; rejected]
        n = len(variants)
        logps = self.policy_log_probs(
            model,
            model_inputs["input_ids"].repeat(n, 1),
            model_inputs["attention_mask"].repeat(n, 1),
            model_inputs["completion_mask"].repeat(n, 1),
            soft,
        )
        loss = 0.0
        for i, (weight, variant_logps) in enumerate(zip(weights, logps.chunk(n), strict=True)):
            chosen_logps, rejected_logps = variant_logps.chunk(2)
            chosen_rewards = self.beta * (chosen_logps - ref_chosen)
            rejected_rewards = self.beta * (rejected_logps - ref_rejected)
            loss = loss + weight * -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
            if self.args.sft_coef > 0:
                chosen_tokens = model_inputs["completion_mask"].chunk(2)[0].sum().clamp(min=1)
                sft_loss = -chosen_logps.sum() / chosen_tokens  # per chosen token, as TRL's loss_type="sft"
                loss = loss + weight * self.args.sft_coef * sft_loss
                if i == 0:
                    self._metrics[mode]["sft_loss"].append(self.accelerator.gather(sft_loss.detach()).mean().item())
            if i == 0:
                self._log_metrics(
                    mode, model_inputs, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, groups
                )
        return (loss, None) if return_outputs else loss

    def _log_metrics(self, mode, inputs, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, groups):
        metrics = self._metrics[mode]
        gather = self.accelerator.gather_for_metrics
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
        correct = (chosen_rewards > rejected_rewards).float()
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather(correct).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        if groups is not None and self._group_names:
            for group, flag in zip(gather(groups).tolist(), gather(correct).tolist(), strict=True):
                metrics[f"rewards/accuracies/{self._group_names[group]}"].append(flag)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the user model in its own group when `user_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.is_deepspeed_enabled:  # DeepSpeed builds its optimizer from its own config
            return optimizer
        return with_own_learning_rate(optimizer, self.user_model, self.args.user_learning_rate)

    # ------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        state_dict, user_state = split_attached_state(state_dict, USER_MODEL_ATTRIBUTE)
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            self.user_model.save_pretrained(output_dir, state_dict=user_state or None)

    # ------------------------------------------------------------------ resuming (see trl_custom.checkpointing)
    def _check_resumable(self, checkpoint: str) -> None:
        """Refuse, naming the file and the fix, a checkpoint whose user model does not match this trainer's."""
        fix = (
            "Resume with the users and user-model settings (users, num_user_tokens, user_dim, user_model_type, "
            "num_clusters, user_feature_columns) the checkpoint was trained with, or start a new run: a new "
            "output_dir, without resume_from_checkpoint."
        )
        path = os.path.join(checkpoint, USER_MODEL_CONFIG_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: {checkpoint} was not written by PersonalizedDPOTrainer, so its user model "
                f"cannot be resumed. {fix}"
            )
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        current = asdict(self.user_model.config)
        differ = [name for name in current if name != "strict" and saved.get(name) != current[name]]
        if differ:
            details = "; ".join(
                f"{name}: saved {_summary(saved.get(name))}, this run {_summary(current[name])}" for name in differ
            )
            raise ValueError(f"{path} does not match this trainer's user model ({details}). {fix}")
        check_saved_state(self.user_model, os.path.join(checkpoint, USER_MODEL_WEIGHTS_FILE), fix)

    def _restore_attached(self, checkpoint: str) -> None:
        fix = "Resume from a checkpoint-N folder written by this trainer (it saves the user model in each)."
        load_saved_state(self.user_model, os.path.join(checkpoint, USER_MODEL_WEIGHTS_FILE), fix)


def _check_value(column, value, index, dataset_name, args) -> None:
    """Refuse, naming the row, the column and the fix, an empty response or a non-numeric/non-finite user feature."""
    where = f"Row {index} of the {dataset_name} dataset"
    if column in ("chosen", "rejected"):
        if is_empty_response(value):
            raise ValueError(
                f"{where} has an empty '{column}' response. Remove the row or fill in the response: an empty "
                "response cannot be preferred or dispreferred."
            )
    elif isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"{where} has {column}={value!r}, but user features (`user_feature_columns`) must be finite numbers. Fix "
            "or drop the row, or cast the column to float (`dataset.cast_column(...)`)."
        )


def _summary(value) -> str:
    """A config value for an error message: long lists (user vocabularies) by their length and first entries."""
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} entries starting {value[:5]!r}"
    return repr(value)


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
