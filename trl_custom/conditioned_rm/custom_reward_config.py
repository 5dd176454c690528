# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass, field

from trl import RewardConfig

from ..soft_tokens import ConditioningArguments
from ..soft_tokens.spec import CONDITION_MODES, DEFAULT_TEMPLATE, SOFT_TOKEN_KINDS
from .encoding import TRUNCATION_MODES
from .reward_head import POOLINGS


AUTO_CONDITION_MODE = "auto"
CONFIG_CONDITION_MODES = (AUTO_CONDITION_MODE, *CONDITION_MODES)
# where the condition's learned parameters enter the reward model -> the soft tokens' placement
CONDITION_PLACEMENTS = {"input": "after_first", "reward_head": "reward_head"}


@dataclass
class CustomRewardConfig(ConditioningArguments, RewardConfig):
    r"""
    Configuration class for [`CustomRewardTrainer`]: TRL's [`~trl.RewardConfig`] plus conditioning on a domain or
    user, customized preference imitation, the truncation and pooling of the reward model's inputs.

    Parameters:
        > Conditioning (the options [`PersonalizedDPOConfig`] shares are described in [`ConditioningArguments`])

        condition_mode (`str`, *optional*, defaults to `"auto"`):
            How the reward model is conditioned on the `condition_column`: `"text"` renders the condition into the
            input with `condition_template` (the result is a plain sequence-classification model), `"embedding"`
            inserts `num_condition_tokens` learned soft tokens per condition (after the first token: BOS/CLS stays
            first), `"text+embedding"` does both, `"none"` behaves exactly as TRL's `RewardTrainer`. `"auto"` (or
            `None`) decides from the training dataset: with a `condition_column` column it is `"text"` (or the mode
            of a model saved by [`CustomRewardTrainer`] with soft tokens, to go on training them); without one it is
            `"none"`, so that a TRL dataset trains exactly as with TRL's `RewardTrainer`, and the trainer logs once
            that conditioning is off. The resolved spec is `trainer.conditioning`, saved in the model's record
            (`trl_custom.json`). Explicit modes refuse a dataset without the column.
        condition_column (`str`, *optional*, defaults to `"domain"`):
            Dataset column holding the condition value (a domain name, a user id, ...).
        condition_template (`str`, *optional*, defaults to `"Preference domain: {condition}.\n\n"`):
            Template of the text modes; prefix of the prompt (standard data) or system message (conversational).
        condition_model (`str`, *optional*, defaults to `"table"`):
            The soft tokens of the embedding modes (see [`ConditioningArguments`]): the user model, `"table"` (free
            parameters per condition), `"lowrank"` (a `condition_dim`-sized vector per condition times a shared basis;
            LoRe) or `"prototype"` (a weight vector per condition over `num_prototypes` shared prototypes; PAL).
        condition_placement (`str`, *optional*, defaults to `"input"`):
            Where the embedding modes' learned condition enters the reward model. `"input"`: `num_condition_tokens`
            soft tokens inserted after the first token, read by every layer. `"reward_head"`: one vector per
            condition added to the reward head over the features it reads (`reward = head(f) + u_c . f`; with
            `"lowrank"`/`"prototype"`, a condition mixes `condition_dim`/`num_prototypes` basis rewards: LoRe's
            form). Much cheaper, and with a frozen backbone a new condition is fitted from cached features; see
            [`~trl_custom.soft_tokens.head`]. `num_condition_tokens` does not apply there.
        condition_dropout (`float`, *optional*, defaults to `0.0`):
            `"embedding"` mode: probability of giving a training pair the generic entry instead of its condition,
            so that the generic entry learns the population preference. Such pairs are logged as
            `accuracy/dropped`, apart from `accuracy/generic` (pairs without a condition).

        > Losses

        imitation_coef (`float`, *optional*, defaults to `0.0`):
            Weight of the customized preference imitation loss (DSP): the language-modeling loss on the chosen
            response tokens (prompt masked), added to the ranking loss. Needs a causal-LM backbone.

        > Inputs (recorded in `trl_custom.json`, so that scorers read inputs as training did)

        truncation_mode (`str`, *optional*, defaults to `"head_tail"`):
            What happens to a pair with a sequence longer than `max_length` tokens (the count is always logged):
            `"head_tail"` cuts the middle (keeps the first `max_length // 4` tokens, where the condition and question
            are, and the last ones, where the response ends), `"keep_start"` keeps the first `max_length - 1` tokens
            and the last one (EOS/`[SEP]`), `"drop"` drops the pair, `"error"` refuses it.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            A token budget for the prompt (condition template + question): only its first `max_prompt_length` tokens
            are kept, whatever the sequence's length, leaving the rest of `max_length` to the response. Needs an
            explicit `prompt` column or prompts the chosen and rejected responses share.
        pooling (`str`, *optional*, defaults to `"model"`):
            What the reward head reads: `"model"`, the model's own pooling, as TRL (BERT's `[CLS]` pooler, a
            decoder's last token); `"mean"`, the mean of the encoder's last hidden states over the sequence's tokens,
            the sentence embedding that sentence-transformers encoders (all-MiniLM-L6-v2, ...) were trained to
            produce. `"mean"` needs an encoder whose head reads a pooler (BERT family) and `padding_free=False`.
            [`load_reward_model`], [`RewardScorer`] and [`ConditionedRewardFunction`] pool the same way (a plain
            `transformers` pipeline would not).

        > Batching

        padding_free (`bool`, *optional*, defaults to `False`):
            Pack the chosen and rejected sequences of each batch end to end (first-fit-decreasing into rows of the
            batch's longest sequence, one row with FlashAttention), with `position_ids` restarting per sequence and
            no padding, instead of padding them to the longest one. Same rewards and losses as the padded batch, less
            compute when lengths vary. Needs a decoder reward model (Llama, Qwen2, SmolLM2, ...) with
            `attn_implementation` `"sdpa"`, `"eager"`, `"flex_attention"` or `"flash_attention_2/3"`.
    """

    RENAMED_OPTIONS = {
        "condition_in_text": "was merged into condition_mode: use condition_mode='text+embedding' (the condition's "
        "name in the text and its soft tokens).",
        "long_pair_policy": "was merged into truncation_mode: 'truncate' -> truncation_mode='head_tail' (or "
        "'keep_start'), 'drop' -> truncation_mode='drop', 'error' -> truncation_mode='error'.",
        "imitation_chunk_size": "was removed: the imitation loss runs the LM head over chunks of 512 tokens.",
        "margin_coef": "was removed: the `margin` column enters the loss as in TRL's RewardTrainer; scale margins "
        "where they are made (`trl-custom augment --margin_scale`), or with `dataset.map`.",
    }

    condition_mode: str | None = field(
        default=AUTO_CONDITION_MODE,
        metadata={
            "help": "'auto' ('text' when the dataset has `condition_column`, else 'none'), 'none', 'text', "
            "'embedding' or 'text+embedding'.",
            "choices": CONFIG_CONDITION_MODES,
        },
    )
    condition_column: str = field(default="domain", metadata={"help": "Dataset column holding the condition."})
    condition_template: str = field(
        default=DEFAULT_TEMPLATE, metadata={"help": "Template of the text modes, with a {condition} field."}
    )
    condition_model: str = field(
        default="table", metadata={"help": "'table', 'lowrank' or 'prototype'.", "choices": SOFT_TOKEN_KINDS}
    )
    condition_placement: str = field(
        default="input",
        metadata={
            "help": "Where a learned condition enters: 'input' (soft tokens) or 'reward_head' (a vector at the head).",
            "choices": tuple(CONDITION_PLACEMENTS),
        },
    )
    condition_dropout: float = field(default=0.0, metadata={"help": "Probability of training a pair as generic."})
    imitation_coef: float = field(default=0.0, metadata={"help": "Weight of the LM loss on chosen responses."})
    truncation_mode: str = field(
        default="head_tail",
        metadata={"help": "'head_tail', 'keep_start', 'drop' or 'error'.", "choices": TRUNCATION_MODES},
    )
    max_prompt_length: int | None = field(default=None, metadata={"help": "Token budget of the prompt."})
    pooling: str = field(default="model", metadata={"help": "'model' or 'mean' (encoders).", "choices": POOLINGS})
    padding_free: bool = field(
        default=False,
        metadata={"help": "Pack the sequences of each batch without padding (decoder reward models)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.condition_mode is None:
            self.condition_mode = AUTO_CONDITION_MODE
        if self.condition_mode not in CONFIG_CONDITION_MODES:
            raise ValueError(f"condition_mode={self.condition_mode!r}: choose one of {CONFIG_CONDITION_MODES}.")
        if self.truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode={self.truncation_mode!r}: choose one of {TRUNCATION_MODES}.")
        if self.max_prompt_length is not None and not (
            self.max_prompt_length >= 1 and (self.max_length is None or self.max_prompt_length < self.max_length)
        ):
            raise ValueError(
                f"max_prompt_length={self.max_prompt_length} must be >= 1 and below max_length={self.max_length}, "
                "leaving room for the response; or None (no prompt budget)."
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: choose one of {POOLINGS}.")
        if self.pooling == "mean" and self.padding_free:
            raise ValueError(
                "pooling='mean' averages over each padded sequence's attention mask, which padding-free batches do "
                "not have (and padding_free serves decoder reward models): set padding_free=False."
            )
        renders = self.condition_mode in ("text", "text+embedding", AUTO_CONDITION_MODE)
        if renders and "{condition}" not in self.condition_template:
            raise ValueError(
                f"condition_template={self.condition_template!r} has no '{{condition}}' field: add one, e.g. "
                "'Preference domain: {condition}.\\n\\n'."
            )
        soft = self.condition_mode in ("embedding", "text+embedding")
        changed = self.changed_soft_token_options()
        if self.condition_placement not in CONDITION_PLACEMENTS:
            raise ValueError(
                f"condition_placement={self.condition_placement!r}: choose one of {tuple(CONDITION_PLACEMENTS)}."
            )
        if self.condition_placement != "input":
            changed.append("condition_placement")
            if self.num_condition_tokens != type(self).__dataclass_fields__["num_condition_tokens"].default:
                raise ValueError(
                    f"num_condition_tokens={self.num_condition_tokens} counts soft tokens in the input, but "
                    "condition_placement='reward_head' puts one vector per condition at the reward head: leave "
                    "num_condition_tokens unset, or set condition_placement='input'."
                )
            if self.padding_free:
                from .conditioning import PACKED_HEAD_ERROR

                raise ValueError(PACKED_HEAD_ERROR)
        if changed and not soft:
            raise ValueError(
                f"{', '.join(f'{n}={getattr(self, n)!r}' for n in changed)}: soft-token options, read only with "
                f"condition_mode='embedding' or 'text+embedding' (got {self.condition_mode!r}). Set the mode, or "
                "leave them unset."
            )
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}.")
        if self.condition_dropout > 0 and self.condition_mode != "embedding":
            hint = (
                " (the text would still name the dropped condition)" if self.condition_mode == "text+embedding" else ""
            )
            raise ValueError(
                f"condition_dropout only applies to condition_mode='embedding' (got {self.condition_mode!r}){hint}: "
                "set condition_mode='embedding', or condition_dropout=0."
            )
        if self.imitation_coef < 0:
            raise ValueError(f"imitation_coef must be >= 0, got {self.imitation_coef}.")
