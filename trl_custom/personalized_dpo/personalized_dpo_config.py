# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass, field

from trl import DPOConfig

from ..soft_tokens.policy import PERSONALIZATION_OPTIONS, RENAMED_USER_OPTIONS, PolicyConditioningArguments


# Options that only mean something with personalization on (an error when it is off and one of them is set)
DPO_PERSONALIZATION_OPTIONS = (*PERSONALIZATION_OPTIONS, "alpha", "generic_loss_mode")


@dataclass
class PersonalizedDPOConfig(PolicyConditioningArguments, DPOConfig):
    r"""
    Configuration class for [`PersonalizedDPOTrainer`] (P-DPO, from P-RLHF): TRL's [`~trl.DPOConfig`] plus the user
    model and the α-mixed objective. Every field of `DPOConfig` keeps its meaning: `loss_type` (any of TRL's, or a
    list with `loss_weights`), `f_divergence_type`, `label_smoothing`, `ld_alpha`, `use_weighting` etc. apply to the
    personalized and the generic-user terms alike. The user model's options are the conditioning options of
    [`CustomRewardConfig`], under the same names, with a policy's defaults ([`PolicyConditioningArguments`]); the
    online trainers ([`PersonalizedGRPOConfig`], [`PersonalizedRLOOConfig`]) share them.

    Parameters:
        > User model

        condition_mode (`str`, *optional*, defaults to `"auto"`):
            `"auto"`: personalize when the training dataset has `condition_column`, else train exactly as TRL's
            `DPOTrainer` (one log line says so). `"embedding"`: require the column (an error names it when missing):
            each user's soft tokens go in front of the policy's input. `"none"`: never (the options below must then
            keep their defaults: setting one is an error, not a no-op).
        condition_column (`str`, *optional*, defaults to `"user_id"`):
            Dataset column with the user id (int or string). Empty/`None` means the generic user.
        conditions (`list[str]` or `None`, *optional*, defaults to `None`):
            Known user ids, in table order. If `None`, the sorted distinct ids of the training dataset.
        strict_conditions (`bool`, *optional*, defaults to `False`):
            Raise on user ids outside the table instead of using the generic user.
        num_condition_tokens (`int`, *optional*, defaults to `4`):
            Soft tokens prepended to the policy input.
        condition_model (`str`, *optional*, defaults to `"lowrank"`):
            `"lowrank"`: generic tokens + a `condition_dim`-sized vector per user times a shared basis (P-RLHF's
            individual user model); `"prototype"`: a mixture, per user, of `num_prototypes` shared prototypes
            (P-RLHF's cluster model); `"table"`: free tokens per user.
        condition_dim (`int`, *optional*, defaults to `32`), num_prototypes (`int`, *optional*, defaults to `8`):
            Sizes of the user model.
        condition_feature_columns (`list[str]` or `None`, *optional*, defaults to `None`):
            Numeric dataset columns with user features, added to the user's vector through a linear map.
        group_column (`str` or `None`, *optional*, defaults to `None`):
            Column naming a group per row (e.g. `"short"`/`"long"`), for `rewards/accuracies/<group>` metrics. If
            `None`, per-user metrics are logged when there are at most 20 users, users outside the table as
            `rewards/accuracies/unseen`.
        condition_learning_rate (`float` or `None`, *optional*, defaults to `None`):
            Learning rate of the user model (its own optimizer group, no weight decay); `None` uses `learning_rate`.
            The user model starts as the generic user (its basis is zero), so a higher rate than the policy's speeds
            up personalization.

        > Objective

        alpha (`float`, *optional*, defaults to `0.5`):
            loss = alpha x L(personalized) + (1 - alpha) x L(generic user), `L` being TRL's loss (`loss_type`).
        generic_loss_mode (`str`, *optional*, defaults to `"sampled"`):
            `"exact"` computes both terms on every pair (two policy passes); `"sampled"` gives each pair the generic
            user with probability `1 - alpha`, an unbiased estimate of the same loss at the cost of one pass. Its
            training reward metrics cover the pairs as sampled (a generic-user pair cannot fit conflicting users), so
            read the personalized accuracy from evaluation, which always uses each row's own user.
            `"exact"` is refused under DeepSpeed ZeRO-3, which cannot reduce gradients from two forward passes.
            To anchor the policy to the preferred responses (RPO), use TRL's own `loss_type=["sigmoid", "sft"]` with
            `loss_weights`: the `"sft"` term runs under the same user tokens.

        > Batching

        padding_free (`bool`, *optional*, defaults to `False`):
            TRL's field, implemented here (TRL 1.16's `DPOTrainer` turns it off): pack the chosen and rejected
            sequences of each batch end to end (first-fit-decreasing into rows of the batch's longest sequence, one
            row with FlashAttention), each with its user tokens in front and `position_ids` restarting per sequence,
            instead of padding them. Same log-probabilities and loss as the padded batch, for the policy and the
            reference passes. Needs `attn_implementation` `"sdpa"`, `"eager"`, `"flex_attention"` or
            `"flash_attention_2/3"`.
    """

    RENAMED_OPTIONS = {
        **RENAMED_USER_OPTIONS,
        "sft_coef": "was removed (it rewrote loss_type): set loss_type=['sigmoid', 'sft'] and loss_weights=[1.0, c], "
        "TRL's own options, instead of sft_coef=c.",
    }

    alpha: float = field(default=0.5, metadata={"help": "Weight of the personalized DPO loss."})
    generic_loss_mode: str = field(default="sampled", metadata={"help": "'exact' or 'sampled'."})
    padding_free: bool = field(
        default=False,
        metadata={"help": "Pack the sequences of each batch without padding (implemented by this trainer)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        if self.generic_loss_mode not in ("exact", "sampled"):
            raise ValueError(f"generic_loss_mode={self.generic_loss_mode!r}: choose 'exact' or 'sampled'.")
