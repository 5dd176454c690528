# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The user model in TRL's online trainers (GRPO, RLOO): each rollout's user tokens in generation and in every
log-prob pass, rewards and lengths per user.

[`PersonalizedOnlineMixin`] extends TRL's `_generate_and_score_completions`, `_generate_single_turn`,
`_get_per_token_logps_and_entropies`, `_calculate_rewards` and `_compute_loss` (each calls `super()`):

- **generation** (the transformers path): the policy's `generate` is called with `inputs_embeds`, the user's soft
  tokens in front of each left-padded prompt ([`~trl_custom.soft_tokens.embed_with_soft_tokens`]); the prompt ids are
  put back in front of the new tokens, the shape TRL slices;
- **log-probs** (old, reference and loss passes, called chunk by chunk): [`~trl_custom.soft_tokens.soft_token_forward`]
  puts each row's tokens in front of it, with `position_ids = cumsum(mask) - 1`, the positions generation used, so
  the log-probs of the loss pass equal those of the rollout before the first update;
- **the reference** reads the frozen *initial* user model (a copy taken when training starts: new, or loaded from a
  P-DPO checkpoint), so the KL penalty starts at 0 and measures how far each user's policy moved;
- **users stay with their rows**: the rollout's user ids travel in TRL's batch dict (`user_ids`), through its shuffles,
  splits and `steps_per_generation` buffers; reward functions receive the user column as any dataset column.
"""

from __future__ import annotations

import contextlib
import copy
from collections import defaultdict

import torch

from .. import trl_seams
from ..record import ModelRecord
from ..soft_tokens import (
    ConditioningSpec,
    SoftTokens,
    attach_soft_tokens,
    embed_with_soft_tokens,
    new_soft_tokens,
    soft_token_forward,
)
from ..soft_tokens.module import with_own_learning_rate
from ..soft_tokens.policy import policy_spec, resolve_personalization, saved_user_model


MAX_USERS_WITH_METRICS = 20
# Generation and data paths that do not take `inputs_embeds`, or that the user model cannot follow yet
UNSUPPORTED = {
    "use_vllm": "vLLM generation (server or colocate: TRL sends token ids only, and would push the user model's "
    "weights to vLLM)",
    "use_transformers_continuous_batching": "continuous batching (`generate_batch` takes token ids only)",
    "sync_ref_model": "sync_ref_model (TRL copies the policy into the reference parameter by parameter; the "
    "reference here also holds the initial user model)",
}


def user_model_setup(trainer, model, args, train_dataset, eval_dataset, soft_tokens):
    """
    Before TRL's `__init__`: whether `trainer` personalizes, its users (`trainer.conditioning`) and the user model it
    continues (from a folder or model saved by a personalized trainer, or `soft_tokens`). Refuses what the user model
    cannot follow, naming it.
    """
    saved, soft_tokens = saved_user_model(model, soft_tokens)
    name = type(trainer).__name__
    trainer.personalized = resolve_personalization(args, name, train_dataset, eval_dataset)
    trainer.conditioning = ConditioningSpec(mode="none", column=args.condition_column)
    if not trainer.personalized:
        return None
    for option, what in UNSUPPORTED.items():
        if getattr(args, option, False):
            raise ValueError(
                f"{name} with users does not support {what}. Set {option}=False (generation then runs on the "
                "transformers path, which takes the user tokens), or train without the user column."
            )
    if args.condition_feature_columns:
        raise ValueError(f"{name}: condition_feature_columns are not supported online yet; remove them.")
    trainer.conditioning = policy_spec(args, saved, soft_tokens, train_dataset)
    return soft_tokens


class PersonalizedOnlineMixin:
    """
    The user model in a TRL online trainer (see the module docstring). Listed before the TRL trainer among the
    bases; `__init__` of the subclass calls [`user_model_setup`] before TRL's and [`attach_user_model`] after.
    """

    personalized: bool = False
    soft_tokens: SoftTokens | None = None
    reference_tokens: SoftTokens | None = None
    _rollout_user_ids: torch.Tensor | None = None
    _pass_user_ids: torch.Tensor | None = None

    def attach_user_model(self, soft_tokens: SoftTokens | None, model_name) -> None:
        """After TRL's `__init__`: the record, the user model (new, or continued and grown by the new users) and the
        frozen copy the reference reads."""
        policy = self.accelerator.unwrap_model(self.model)
        self.record = ModelRecord(
            kind="policy",
            conditioning=self.conditioning,
            max_length=None,
            trainer=type(self).__name__,
            base_model=model_name if isinstance(model_name, str) else trl_seams.name_or_path(policy),
        ).attach(policy)
        if not self.personalized:
            self.soft_tokens = None
            return
        if trl_seams.is_vision_dataset(self) or getattr(self, "_is_vlm", False):
            raise ValueError(f"{type(self).__name__} personalizes text-only policies; this one takes images.")
        for option in ("tools", "rollout_func", "environment_factories"):
            if getattr(self, option, None):
                raise ValueError(
                    f"{type(self).__name__} with users does not support `{option.removesuffix('_factories')}` yet: "
                    "train without the user column, or without it."
                )
        if soft_tokens is None:
            soft_tokens = new_soft_tokens(policy, self.conditioning.tokens, len(self.conditioning.conditions))
        else:
            self.conditioning.tokens = soft_tokens.config
            soft_tokens.extend_to(len(self.conditioning.conditions))  # users new to the model: generic at first
        self.soft_tokens = attach_soft_tokens(policy, soft_tokens)  # after PEFT wrapping: trained, in the optimizer
        self.reference_tokens = copy.deepcopy(self.soft_tokens).requires_grad_(False)

    # ------------------------------------------------------------------ rows and users
    def user_ids_of(self, rows) -> torch.Tensor:
        """Soft-token ids of the rollouts' users (`None`/unknown: the generic user; strict: unknown users refused)."""
        column = self.conditioning.column
        missing = [i for i, row in enumerate(rows) if column not in row]
        if missing:
            raise ValueError(
                f"Rows {missing[:5]} of the batch have no '{column}': the user column was dropped. Keep "
                "`remove_unused_columns=False` (TRL's default for online trainers)."
            )
        ids = [self.conditioning.condition_id(row[column], " (a rollout's user)") for row in rows]
        return torch.tensor(ids, device=self.accelerator.device)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        columns = trl_seams.signature_columns(self)
        if self.personalized and self.conditioning.column not in columns:
            trl_seams.set_signature_columns(self, [*columns, self.conditioning.column])

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout with each row's user tokens in generation and in the old/reference log-probs; the user ids
        travel with the rows (`user_ids`), and the user goes to the completions table."""
        if not self.personalized:
            return super()._generate_and_score_completions(inputs)
        user_ids = self.user_ids_of(inputs)
        self._log_completion_extra(self.conditioning.column, [str(row[self.conditioning.column]) for row in inputs])
        self._rollout_user_ids = user_ids
        try:
            with self._user_passes(user_ids):
                output = super()._generate_and_score_completions(inputs)
        finally:
            self._rollout_user_ids = None
        output["user_ids"] = user_ids
        return output

    @contextlib.contextmanager
    def _user_passes(self, user_ids):
        """The log-prob passes inside the block read the users `user_ids` (one per row of the pass)."""
        self._pass_user_ids = user_ids
        try:
            yield
        finally:
            self._pass_user_ids = None

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        """TRL's generation, with the policy's `generate` reading each prompt's user tokens."""
        if not self.personalized:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        policy = self.accelerator.unwrap_model(self.model_wrapped)
        generate, user_ids, soft_tokens = policy.generate, self._rollout_user_ids, self.soft_tokens

        def generate_for_users(input_ids=None, attention_mask=None, **generate_kwargs):
            if input_ids.shape[0] != user_ids.shape[0]:
                raise RuntimeError(
                    f"{input_ids.shape[0]} prompts to generate for, {user_ids.shape[0]} users: generation out of step."
                )
            with torch.no_grad():
                inputs = embed_with_soft_tokens(policy, soft_tokens(user_ids), input_ids, attention_mask)
            inputs.pop("position_ids")  # generation computes them from the mask: cumsum(mask) - 1, the same
            new_tokens = generate(**inputs, **generate_kwargs)
            return torch.cat([input_ids, new_tokens], dim=1)  # as `generate(input_ids)` returns: TRL slices it

        policy.generate = generate_for_users
        try:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        finally:
            del policy.generate

    def _compute_loss(self, model, inputs):
        """TRL's loss, its policy pass reading each row's (trainable) user tokens."""
        if not self.personalized:
            return super()._compute_loss(model, inputs)
        with self._user_passes(inputs["user_ids"]):
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, *args, **kwargs):
        """TRL's log-probs, chunk by chunk, each row with its user's tokens: the trainable user model for the policy
        (old and loss passes), its frozen initial copy for the reference."""
        if not self.personalized or self._pass_user_ids is None:
            return super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
        if self._pass_user_ids.shape[0] != input_ids.shape[0]:
            raise RuntimeError(f"{input_ids.shape[0]} rows, {self._pass_user_ids.shape[0]} users: out of step.")
        reference = self._is_reference_pass(model)
        soft_tokens = self.reference_tokens if reference else self.soft_tokens
        if reference:
            self.reference_tokens.to(self.soft_tokens.rows.device)
        tokens = soft_tokens(self._pass_user_ids)
        with soft_token_forward(self.accelerator.unwrap_model(model), tokens, sequential=True):
            return super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)

    def _is_reference_pass(self, model) -> bool:
        """TRL computes the reference with `ref_model`, or with the PEFT adapter switched off (or named `"ref"`)."""
        if getattr(self, "ref_model", None) is not None and model is self.ref_model:
            return True
        unwrapped = self.accelerator.unwrap_model(model)
        if hasattr(unwrapped, "get_model_status") and hasattr(unwrapped, "peft_config"):
            return unwrapped.active_adapter == "ref" or unwrapped.get_model_status().enabled is False
        return False

    # ------------------------------------------------------------------ metrics
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, plus their mean and the completions' mean length per user (or per `group_column`)."""
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.personalized:
            return rewards_per_func
        names = self._metric_names(inputs)
        if names is None:
            return rewards_per_func
        from accelerate.utils import gather_object

        all_names = gather_object(names)
        lengths = gather_object([len(ids) for ids in completion_ids_list])
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1).tolist()
        per_name = defaultdict(lambda: ([], []))
        for name, reward, length in zip(all_names, rewards, lengths, strict=True):
            per_name[name][0].append(reward)
            per_name[name][1].append(length)
        mode = "train" if self.model.training else "eval"
        metrics = trl_seams.metrics(self, mode)
        for name, (values, sizes) in per_name.items():
            metrics[f"user_reward/{name}"].append(sum(values) / len(values))
            metrics[f"user_completion_length/{name}"].append(sum(sizes) / len(sizes))
        return rewards_per_func

    def _metric_names(self, rows) -> list[str] | None:
        """Each row's metrics name: its `group_column` value, or (up to 20 users) its user, `unseen` for users outside
        the table; `None`: too many users and no group column."""
        group_column = self.args.group_column
        if group_column is not None:
            return [str(row[group_column]) for row in rows]
        if len(self.conditioning.conditions) > MAX_USERS_WITH_METRICS:
            return None
        values = [row[self.conditioning.column] for row in rows]
        return [str(v) if self.conditioning.is_known(v) and v is not None else "unseen" for v in values]

    def create_optimizer(self, model=None):
        """TRL's optimizer, with the user model in its own group when `condition_learning_rate` is set."""
        optimizer = super().create_optimizer(model)
        if self.soft_tokens is None or self.is_deepspeed_enabled:  # DeepSpeed builds its optimizer from its config
            return optimizer
        return with_own_learning_rate(optimizer, self.soft_tokens, self.args.condition_learning_rate)
