# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass, field

from trl import DPOConfig


# Options that only mean something with personalization on (an error when it is off and one of them is set)
USER_OPTIONS = (
    "users",
    "strict_users",
    "num_user_tokens",
    "user_dim",
    "user_model_type",
    "num_clusters",
    "user_feature_columns",
    "user_group_column",
    "alpha",
    "generic_loss_mode",
    "user_learning_rate",
)


@dataclass
class PersonalizedDPOConfig(DPOConfig):
    r"""
    Configuration class for [`PersonalizedDPOTrainer`] (P-DPO, from P-RLHF): TRL's [`~trl.DPOConfig`] plus the user
    model and the α-mixed objective. Every field of `DPOConfig` keeps its meaning: `loss_type` (any of TRL's, or a
    list with `loss_weights`), `f_divergence_type`, `label_smoothing`, `ld_alpha`, `use_weighting` etc. apply to the
    personalized and the generic-user terms alike.

    Parameters:
        > User model

        personalize (`bool` or `None`, *optional*, defaults to `None`):
            `None`: personalize when the training dataset has `user_column`, else train exactly as TRL's `DPOTrainer`
            (one log line says so). `True`: require the column (an error names it when missing). `False`: never
            (the user options below must then keep their defaults: setting one is an error, not a no-op).
        user_column (`str`, *optional*, defaults to `"user_id"`):
            Dataset column with the user id (int or string). Empty/`None` means the generic user.
        users (`list[str]` or `None`, *optional*, defaults to `None`):
            Known user ids, in table order. If `None`, the sorted distinct ids of the training dataset.
        strict_users (`bool`, *optional*, defaults to `False`):
            Raise on user ids outside the table instead of using the generic user.
        num_user_tokens (`int`, *optional*, defaults to `4`):
            Soft tokens prepended to the policy input.
        user_dim (`int`, *optional*, defaults to `32`):
            Size of each user's individual vector (projected to `num_user_tokens x hidden`).
        user_model_type (`str`, *optional*, defaults to `"individual"`):
            `"individual"`: a free vector per user; `"cluster"`: user weights over `num_clusters` shared prototypes.
        num_clusters (`int`, *optional*, defaults to `8`):
            Prototypes of the cluster user model.
        user_feature_columns (`list[str]` or `None`, *optional*, defaults to `None`):
            Numeric dataset columns with user features, added to the individual vector through a linear map.
        user_group_column (`str` or `None`, *optional*, defaults to `None`):
            Column naming a group per row (e.g. `"short"`/`"long"`), for `rewards/accuracies/<group>` metrics. If
            `None`, per-user metrics are logged when there are at most 20 users.

        > Objective

        alpha (`float`, *optional*, defaults to `0.5`):
            loss = alpha x L(personalized) + (1 - alpha) x L(generic user), `L` being TRL's loss (`loss_type`).
        user_learning_rate (`float` or `None`, *optional*, defaults to `None`):
            Learning rate of the user model (its own optimizer group, no weight decay); `None` uses `learning_rate`.
            The user model starts as the generic user (its projection is zero), so a higher rate than the policy's
            speeds up personalization.
        generic_loss_mode (`str`, *optional*, defaults to `"sampled"`):
            `"exact"` computes both terms on every pair (two policy passes); `"sampled"` gives each pair the generic
            user with probability `1 - alpha`, an unbiased estimate of the same loss at the cost of one pass. Its
            training reward metrics cover the pairs as sampled (a generic-user pair cannot fit conflicting users), so
            read the personalized accuracy from evaluation, which always uses each row's own user.
            `"exact"` is refused under DeepSpeed ZeRO-3, which cannot reduce gradients from two forward passes.
        sft_coef (`float`, *optional*, defaults to `0.0`):
            Shorthand for TRL's own `"sft"` loss type: `sft_coef=c` turns `loss_type=["sigmoid"]` into
            `["sigmoid", "sft"]` with `loss_weights=[1.0, c]` (the negative log-likelihood per chosen token, under
            the same user tokens as the DPO term, as in RPO), and is then reset to 0 (the saved config holds the
            list). DPO alone can satisfy a length preference by lowering the probability of every token, which
            drifts the policy off fluent text (e.g. whitespace-only generations for a "short answers" user); this
            term anchors it to the preferred responses. `0` is P-DPO's objective. Setting it together with a
            `loss_type` that already has `"sft"` is an error.

        > Batching

        padding_free (`bool`, *optional*, defaults to `False`):
            TRL's field, implemented here (TRL 1.16's `DPOTrainer` turns it off): pack the chosen and rejected
            sequences of each batch end to end (first-fit-decreasing into rows of the batch's longest sequence, one
            row with FlashAttention), each with its user tokens in front and `position_ids` restarting per sequence,
            instead of padding them. Same log-probabilities and loss as the padded batch, for the policy and the
            reference passes. Needs `attn_implementation` `"sdpa"`, `"eager"`, `"flex_attention"` or
            `"flash_attention_2/3"`.
    """

    personalize: bool | None = field(
        default=None, metadata={"help": "None: when the dataset has `user_column`; True: required; False: never."}
    )
    user_column: str = field(default="user_id", metadata={"help": "Dataset column with the user id."})
    users: list[str] | None = field(default=None, metadata={"help": "Known user ids, in table order."})
    strict_users: bool = field(default=False, metadata={"help": "Raise on unknown user ids."})
    num_user_tokens: int = field(default=4, metadata={"help": "Soft tokens prepended to the policy input."})
    user_dim: int = field(default=32, metadata={"help": "Size of each user's individual vector."})
    user_model_type: str = field(default="individual", metadata={"help": "'individual' or 'cluster'."})
    num_clusters: int = field(default=8, metadata={"help": "Prototypes of the cluster user model."})
    user_feature_columns: list[str] | None = field(default=None, metadata={"help": "Numeric user-feature columns."})
    user_group_column: str | None = field(default=None, metadata={"help": "Column naming a group per row."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the personalized DPO loss."})
    generic_loss_mode: str = field(default="sampled", metadata={"help": "'exact' or 'sampled'."})
    user_learning_rate: float | None = field(default=None, metadata={"help": "Learning rate of the user model."})
    sft_coef: float = field(default=0.0, metadata={"help": "Weight of an NLL loss on the chosen response."})
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
        if not self.sft_coef >= 0.0:  # also rejects NaN
            raise ValueError(f"sft_coef must be >= 0, got {self.sft_coef}.")
        if self.num_user_tokens < 1:
            raise ValueError(f"num_user_tokens must be >= 1, got {self.num_user_tokens}.")
        if self.sft_coef > 0:
            if "sft" in self.loss_type:
                raise ValueError(
                    f"sft_coef={self.sft_coef} adds TRL's 'sft' loss type, but loss_type={self.loss_type} already has "
                    "it: set its weight in `loss_weights` and leave sft_coef at 0."
                )
            weights = list(self.loss_weights) if self.loss_weights is not None else [1.0] * len(self.loss_type)
            self.loss_type = list(self.loss_type) + ["sft"]
            self.loss_weights = weights + [float(self.sft_coef)]
            self.sft_coef = 0.0
