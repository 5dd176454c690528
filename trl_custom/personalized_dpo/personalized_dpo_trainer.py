# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset, IterableDataset
from trl import DPOConfig, DPOTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import global_then_local_main_first

from ..attached_modules import input_embedding_stats, split_attached_state, uses_zero3, with_own_learning_rate
from ..checkpointing import AttachedModuleCheckpointing, check_saved_state, load_saved_state
from ..data.checks import check_text_columns, empty_response_error, feature_error, is_finite_number
from ..data.preferences import is_empty_response
from ..packing import VARLEN_PACKING_ATTENTION, attention_implementation, check_packable
from .personalized_dpo_config import USER_OPTIONS, PersonalizedDPOConfig
from .policy_forward import policy_forward
from .user_model import (
    GENERIC_USER,
    USER_MODEL_ATTRIBUTE,
    USER_MODEL_CONFIG_FILE,
    USER_MODEL_WEIGHTS_FILE,
    UserModel,
    UserModelConfig,
    attach_user_model,
    lookup_user,
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

    A drop-in for `DPOTrainer`: a dataset without the user column (`user_column`, default `"user_id"`) trains
    exactly as `DPOTrainer` does (same losses, metrics and saved files; one log line says so). With the column, a
    [`UserModel`] maps each pair's user (and optional user features) to soft-token embeddings (a shared generic part +
    an individual part) that are prepended to the policy's input, and the loss is

        alpha * L(personalized policy) + (1 - alpha) * L(policy with the generic user's tokens)

    where `L` is TRL's own DPO loss, run unchanged (`DPOTrainer._compute_loss`): every `loss_type` and list of them
    with `loss_weights`, f-divergences, `label_smoothing`, `ld_alpha`, `use_weighting` and the MoE auxiliary loss
    personalize. The user tokens enter through forward hooks on the policy (see
    [`~trl_custom.personalized_dpo.policy_forward`]); the reference model is the non-personalized base (no soft
    tokens): its log-probs come from TRL's `compute_ref_log_probs`, once per batch, and reach TRL's loss as
    precomputed reference log-probs. Unknown users get the generic tokens (or an error with `strict_users=True`).

    Works with any `AutoModelForCausalLM` that accepts `inputs_embeds`, full fine-tuning (with `ref_model`, or
    reloaded from the model's path as in TRL), LoRA/QLoRA (the user model is trained and saved next to the adapter),
    gradient checkpointing, `precompute_ref_log_probs` and padding-free batches (`padding_free=True`, which TRL 1.16's
    `DPOTrainer` turns off: here the policy and reference passes are packed). Metrics: TRL's, plus
    `rewards/accuracies/<group>` per user group and, with `generic_loss_mode="exact"`, the generic-user pass's under
    `generic/...`.

    Every `checkpoint-N/` folder holds the policy (or adapter), `user_model.safetensors` + `user_model.json`, the
    optimizer, scheduler, RNG and trainer state: `trainer.train(resume_from_checkpoint=...)` (a path or `True`)
    restores the user model with the rest, and refuses a checkpoint written for other users.

    Args:
        model, ref_model, data_collator, train_dataset, eval_dataset, processing_class, compute_metrics, callbacks,
        optimizers, quantization_config, peft_config:
            As in [`~trl.DPOTrainer`].
        args ([`PersonalizedDPOConfig`], *optional*): Configuration. A plain [`~trl.DPOConfig`] is accepted and means
            `personalize=False`.
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
            name = model if isinstance(model, str) else model.config._name_or_path
            args = PersonalizedDPOConfig(f"{os.path.basename(str(name).rstrip('/'))}-PersonalizedDPO")
        elif not isinstance(args, PersonalizedDPOConfig):
            if not isinstance(args, DPOConfig):
                raise TypeError(f"`args` must be a PersonalizedDPOConfig or DPOConfig, got {type(args).__name__}.")
            values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
            args = PersonalizedDPOConfig(**{**values, "personalize": False})
        if user_model is None and isinstance(model, str) and os.path.isfile(os.path.join(model, "user_model.json")):
            user_model = UserModel.from_pretrained(model)
        self.personalized = self._resolve_personalize(args, train_dataset, eval_dataset, user_model)
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
        self.user_model = None
        self._users: list[str] = []
        if self.personalized:
            users = user_model.config.users if user_model is not None else self._distinct_users(args, train_dataset)
            self._users = list(users)
            self._user_index = {user: i + 1 for i, user in enumerate(self._users)}
        self._strict_users = args.strict_users
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
        if not self.personalized:
            return
        if self._is_vision_dataset:
            raise ValueError(
                "PersonalizedDPOTrainer personalizes text-only policies; this dataset has images. Train it without "
                f"the '{args.user_column}' column (personalize=False), or use a text-only dataset."
            )
        if data_collator is None and type(self.data_collator) is DataCollatorForPreference:
            collator = self.data_collator  # TRL's, built from the tokenizer and config: the same, plus the users
            self.data_collator = DataCollatorForPersonalizedPreference(
                **{f.name: getattr(collator, f.name) for f in fields(collator) if f.init}
            )
        if user_model is None:
            embeddings = input_embedding_stats(policy, with_std=True)
            user_model = UserModel(
                UserModelConfig(
                    users=self._users,
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
        self.user_model = attach_user_model(policy, user_model)

    # ------------------------------------------------------------------ users and data
    @staticmethod
    def _resolve_personalize(args, train_dataset, eval_dataset, user_model) -> bool:
        """Whether to personalize: `args.personalize`, or (`None`) whether the training set has the user column."""
        datasets = [("train", train_dataset)]
        if eval_dataset is not None:
            datasets += list(eval_dataset.items()) if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]
        has_column = train_dataset is not None and args.user_column in get_dataset_column_names(train_dataset)
        personalize = args.personalize
        if personalize is None:
            personalize = has_column or user_model is not None
            if not personalize and PartialState().is_main_process:
                logger.warning(
                    f"Personalization is off: the training dataset has no '{args.user_column}' column "
                    f"(`user_column`), so PersonalizedDPOTrainer trains exactly as TRL's DPOTrainer. Add the column "
                    "(or set `user_column`) to personalize."
                )
        if not personalize:
            if user_model is not None:
                raise ValueError(
                    "A user model was given but personalize=False: drop `user_model`, or set personalize=True (or "
                    "None) and give the datasets a user column."
                )
            changed = [
                name
                for name in USER_OPTIONS
                if getattr(args, name) != PersonalizedDPOConfig.__dataclass_fields__[name].default
            ]
            if changed:
                reason = (
                    "personalize=False"
                    if args.personalize is False
                    else f"the training dataset has no '{args.user_column}' column"
                )
                raise ValueError(
                    f"Personalization is off ({reason}), so {', '.join(f'{n}={getattr(args, n)!r}' for n in changed)} "
                    "would be ignored. Add the user column to the dataset (or set `user_column`), or remove these "
                    "options."
                )
            return False
        for name, dataset in datasets:
            PersonalizedDPOTrainer._check_user_column(args, dataset, name)
        return True

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
        dataset = check_text_columns(dataset, dataset_name)  # text or messages (a streamed row: as it is read)
        columns = get_dataset_column_names(dataset)
        checked = [c for c in ("chosen", "rejected") if c in columns]
        if self.personalized:
            checked += list(args.user_feature_columns or [])
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
        if not self.personalized:
            return dataset
        if args.user_column not in get_dataset_column_names(dataset):  # e.g. a dataset given to evaluate()
            self._check_user_column(args, dataset, dataset_name)
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
        with global_then_local_main_first():
            return dataset.map(add_user, with_indices=True, **map_kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.personalized:
            self._signature_columns = list(self._signature_columns) + [
                k for k in USER_KEYS if k not in self._signature_columns
            ]

    # ------------------------------------------------------------------ loss
    def _single_packed_row(self, model) -> bool:
        """FlashAttention reads packed sequences from one row only; masked attention packs into several."""
        return attention_implementation(self.accelerator.unwrap_model(model)) in VARLEN_PACKING_ATTENTION

    def _hooked(self, model, soft_tokens=None):
        """TRL's forward passes of `model` inside the block get `soft_tokens` in front and are packed with
        `padding_free` (see [`~trl_custom.personalized_dpo.policy_forward`])."""
        return policy_forward(
            self.accelerator.unwrap_model(model),
            soft_tokens,
            pack=getattr(self, "padding_free", False),  # TRL's __init__ (precomputing) runs before it is set
            single_row=self._single_packed_row(model),
        )

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs, of the non-personalized base: the user keys never reach it. Packed with
        `padding_free`."""
        inputs = {k: v for k, v in inputs.items() if k not in USER_KEYS}
        if not getattr(self, "padding_free", False):
            return super().compute_ref_log_probs(model, inputs)
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
            personal, generic = self._soft_tokens(users, mode)
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

    def _soft_tokens(self, users, mode):
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
        # One call for the users and the generic user (index 0), so that ZeRO-3 gathers the user model's weights.
        both = self.user_model(
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
        """`rewards/accuracies/<group>`: TRL's reward accuracy (β x log-ratio, chosen over rejected) per user group."""
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
        for group, flag in zip(gather(groups).tolist(), gather(correct.float()).tolist(), strict=True):
            self._metrics[mode][f"rewards/accuracies/{self._group_names[group]}"].append(flag)

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the user model in its own group when `user_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.user_model is None or self.is_deepspeed_enabled:  # DeepSpeed builds its optimizer from its config
            return optimizer
        return with_own_learning_rate(optimizer, self.user_model, self.args.user_learning_rate)

    # ------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if self.user_model is None:
            return super()._save(output_dir, state_dict=state_dict)
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
        path = os.path.join(checkpoint, USER_MODEL_CONFIG_FILE)
        if self.user_model is None:
            if os.path.isfile(path):
                raise ValueError(
                    f"{checkpoint} holds a user model ({path}), but this trainer is not personalized (no user "
                    "column, or personalize=False). Resume with the dataset's user column, or start a new run."
                )
            return
        fix = (
            "Resume with the users and user-model settings (users, num_user_tokens, user_dim, user_model_type, "
            "num_clusters, user_feature_columns) the checkpoint was trained with, or start a new run: a new "
            "output_dir, without resume_from_checkpoint."
        )
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
        if self.user_model is None:
            return
        fix = "Resume from a checkpoint-N folder written by this trainer (it saves the user model in each)."
        load_saved_state(self.user_model, os.path.join(checkpoint, USER_MODEL_WEIGHTS_FILE), fix)


def _check_value(column, value, index, dataset_name, args) -> None:
    """Refuse, naming the row, the column and the fix, an empty response or a non-numeric/non-finite user feature."""
    if column in ("chosen", "rejected"):
        if is_empty_response(value):
            raise empty_response_error(index, column, f"the {dataset_name} dataset")
    elif not is_finite_number(value):
        raise feature_error(index, column, value, f"the {dataset_name} dataset")


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
    metrics = trainer._metrics[mode]
    before = {key: len(values) for key, values in metrics.items()}
    tokens = trainer._total_train_tokens
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
        trainer._total_train_tokens = tokens
        metrics["num_tokens"] = [tokens]
