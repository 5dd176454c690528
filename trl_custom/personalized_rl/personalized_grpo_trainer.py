# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.

from trl import GRPOConfig, GRPOTrainer

from ..checkpointing import SoftTokenCheckpointing
from ..soft_tokens import SoftTokens
from ..soft_tokens.policy import personalized_args
from .online import PersonalizedOnlineMixin, user_model_setup
from .personalized_grpo_config import PersonalizedGRPOConfig


class PersonalizedGRPOTrainer(PersonalizedOnlineMixin, SoftTokenCheckpointing, GRPOTrainer):
    """
    GRPO with a user model: TRL's [`~trl.GRPOTrainer`] whose policy reads each rollout's user from soft tokens (the
    P-DPO user model: a generic part + an individual part per user, see [`~trl_custom.soft_tokens.SoftTokens`]), in
    generation and in every log-prob pass, rewarded per user.

    A drop-in for `GRPOTrainer`: a dataset without the user column (`condition_column`, default `"user_id"`), or a
    plain `GRPOConfig`, trains exactly as `GRPOTrainer` (same losses, rewards and saved files, plus the model's record
    `trl_custom.json`). With the column, see [`~trl_custom.personalized_rl.online`] for where the user tokens enter;
    reward functions receive the user column like any other column, so a [`ConditionedRewardFunction`] scores each
    completion under its row's user. The reference model reads the frozen initial user model (the KL starts at 0).
    Users outside the table get the generic user (or an error with `strict_conditions=True`). Metrics: TRL's, plus
    `user_reward/<user>` and `user_completion_length/<user>` (per `group_column` value when given; up to 20 users
    otherwise, `unseen` for users outside the table); the completions table has the user column.

    The user model starts from a P-DPO (or personalized GRPO/RLOO) checkpoint when `model` is one (a folder saved by
    those trainers, or a model from [`load_personalized_model`]), or `soft_tokens=` is given; users of the training
    set it does not know are added (as the generic user) before the optimizer is built. `condition_learning_rate`
    gives it its own learning rate. Checkpoints hold it (`soft_tokens.safetensors` + the record); resuming restores
    it.

    Refused with users, with a message: vLLM and continuous-batching generation (token ids only), tools, environments,
    `rollout_func`, vision models, `sync_ref_model`, and `scale_rewards="batch"` (it mixes users' reward scales).

    Args:
        model, reward_funcs, train_dataset, eval_dataset, processing_class, reward_processing_classes, callbacks,
        optimizers, quantization_config, peft_config, tools, rollout_func, environment_factory:
            As in [`~trl.GRPOTrainer`].
        args ([`PersonalizedGRPOConfig`], *optional*): Configuration; a plain [`~trl.GRPOConfig`] means no users.
        soft_tokens ([`~trl_custom.soft_tokens.SoftTokens`], *optional*): A trained user model to start from.
    """

    _tag_names = ["trl", "grpo", "trl-custom", "personalized"]
    _name = "Personalized GRPO"

    def __init__(self, model, reward_funcs=None, args=None, train_dataset=None, eval_dataset=None,
                 soft_tokens: SoftTokens | None = None, **kwargs):  # fmt: skip
        args = personalized_args(args, model, PersonalizedGRPOConfig, GRPOConfig, "PersonalizedGRPO")
        soft_tokens = user_model_setup(self, model, args, train_dataset, eval_dataset, soft_tokens)
        if self.personalized and args.scale_rewards == "batch":
            raise ValueError(
                "scale_rewards='batch' normalizes every user's rewards by one standard deviation that mixes users "
                "whose rewards differ in scale: keep scale_rewards='group' (the default) with users."
            )
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         **kwargs)  # fmt: skip
        self.attach_user_model(soft_tokens, model)
