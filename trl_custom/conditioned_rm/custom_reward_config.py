# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
from dataclasses import dataclass, field

from trl import RewardConfig

from .conditioning import CONDITION_MODES
from .encoding import TRUNCATION_MODES
from .reward_head import POOLINGS


LONG_PAIR_POLICIES = ("truncate", "drop", "error")
AUTO_CONDITION_MODE = "auto"
CONFIG_CONDITION_MODES = (AUTO_CONDITION_MODE, *CONDITION_MODES)


@dataclass
class CustomRewardConfig(RewardConfig):
    r"""
    Configuration class for [`CustomRewardTrainer`]: TRL's [`~trl.RewardConfig`] plus conditioning on a domain or
    user, customized preference imitation and margin scaling.

    Parameters:
        > Conditioning

        condition_mode (`str`, *optional*, defaults to `"auto"`):
            How the reward model is conditioned on the `condition_column`: `"text"` renders the condition into the
            input with `condition_template` (the result is a plain sequence-classification model), `"embedding"`
            inserts `num_condition_tokens` learned soft tokens per condition, `"none"` behaves exactly as TRL's
            `RewardTrainer`. `"auto"` (or `None`) decides from the training dataset: with a `condition_column`
            column it is `"text"` (or the mode of a model saved by [`CustomRewardTrainer`] in embedding mode, to go
            on training its condition table); without one it is `"none"`, so that a TRL dataset trains exactly as
            with TRL's `RewardTrainer`, and the trainer logs once that conditioning is off. The resolved mode is
            `trainer.conditioning.mode` (saved in `conditioning.json`). `"text"` or `"embedding"` set explicitly
            refuse a dataset without the column.
        condition_column (`str`, *optional*, defaults to `"domain"`):
            Dataset column holding the condition value (a domain name, a user id, ...). Empty/`None` values mean "no
            condition" and use the generic entry.
        conditions (`list[str]` or `None`, *optional*, defaults to `None`):
            Known condition values, in table order. If `None`, the sorted distinct values of the training dataset.
        strict_conditions (`bool`, *optional*, defaults to `False`):
            Raise on values not in `conditions` instead of falling back to the generic entry.
        condition_template (`str`, *optional*, defaults to `"Preference domain: {condition}.\n\n"`):
            Text-mode template; prefix of the prompt (standard data) or system message (conversational data).
        num_condition_tokens (`int`, *optional*, defaults to `4`):
            Soft tokens per condition in embedding mode.
        condition_in_text (`bool`, *optional*, defaults to `False`):
            Embedding mode: render the condition into the input with `condition_template` as well, so the model
            reads both its name (as text mode does) and its soft tokens. Saved in `conditioning.json` (`in_text`),
            so scorers render it too. Not with `condition_dropout` (the text would still name a dropped condition).
        condition_learning_rate (`float` or `None`, *optional*, defaults to `None`):
            Embedding mode: learning rate of the condition table (its own optimizer group, no weight decay); `None`
            uses `learning_rate`. The table starts at the scale of token embeddings and must move far from its
            initialization, so a rate well above the backbone's (e.g. 1e-2) makes the conditioning learn faster.
        condition_dropout (`float`, *optional*, defaults to `0.0`):
            Embedding mode: probability of replacing a training pair's condition by the generic entry, so that the
            generic entry learns the population preference.

        > Losses

        imitation_coef (`float`, *optional*, defaults to `0.0`):
            Weight of the customized preference imitation loss (DSP): the language-modeling loss on the chosen
            response tokens (prompt masked), added to the ranking loss. Needs a causal-LM backbone.
        imitation_chunk_size (`int`, *optional*, defaults to `512`):
            Tokens per chunk of the imitation loss's LM-head computation (bounds memory at `chunk * vocab`).
        margin_coef (`float`, *optional*, defaults to `1.0`):
            Scale of the per-pair `margin` column: loss = `-logsigmoid(r_chosen - r_rejected - margin_coef * margin)`.
        long_pair_policy (`str`, *optional*, defaults to `"truncate"`):
            What to do with pairs longer than `max_length` tokens: `"truncate"` (cut the middle: keep the first
            `max_length // 4` tokens, where the condition and question are, and the last ones, where the response
            ends), `"drop"` or `"error"`. The count is always logged.
        truncation_mode (`str`, *optional*, defaults to `"head_tail"`):
            How `long_pair_policy="truncate"` cuts a sequence longer than `max_length`: `"head_tail"` (above) or
            `"keep_start"` (the first `max_length - 1` tokens, i.e. the start of the prompt and of the response, and
            the last token: EOS/`[SEP]`). Saved with the model, so `RewardScorer` cuts its inputs the same way.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            A token budget for the prompt (condition template + question): only its first `max_prompt_length` tokens
            are kept, whatever the sequence's length, leaving the rest of `max_length` to the response. Needs an
            explicit `prompt` column or prompts the chosen and rejected responses share. Saved with the model.

        > Reward head

        pooling (`str`, *optional*, defaults to `"model"`):
            What the reward head reads: `"model"`, the model's own pooling, as TRL (BERT's `[CLS]` pooler, a
            decoder's last token); `"mean"`, the mean of the encoder's last hidden states over the sequence's tokens,
            the sentence embedding that sentence-transformers encoders (all-MiniLM-L6-v2, ...) were trained to
            produce. `"mean"` needs an encoder whose head reads a pooler (BERT family) and `padding_free=False`. It is
            recorded in `config.json` (`trl_custom_pooling`; beside a LoRA adapter: `trl_custom_settings.json`), so
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

    condition_mode: str | None = field(
        default=AUTO_CONDITION_MODE,
        metadata={
            "help": "'auto' ('text' when the dataset has `condition_column`, else 'none'), 'none', 'text' or "
            "'embedding'.",
            "choices": CONFIG_CONDITION_MODES,
        },
    )
    condition_column: str = field(default="domain", metadata={"help": "Dataset column holding the condition."})
    conditions: list[str] | None = field(default=None, metadata={"help": "Known condition values, in table order."})
    strict_conditions: bool = field(default=False, metadata={"help": "Raise on unknown condition values."})
    condition_template: str = field(
        default="Preference domain: {condition}.\n\n",
        metadata={"help": "Text-mode template with a {condition} field."},
    )
    num_condition_tokens: int = field(default=4, metadata={"help": "Soft tokens per condition (embedding mode)."})
    condition_in_text: bool = field(
        default=False, metadata={"help": "Embedding mode: also render the condition with condition_template."}
    )
    condition_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the condition table (embedding mode)."}
    )
    condition_dropout: float = field(default=0.0, metadata={"help": "Probability of training a pair as generic."})
    imitation_coef: float = field(default=0.0, metadata={"help": "Weight of the LM loss on chosen responses."})
    imitation_chunk_size: int = field(default=512, metadata={"help": "Tokens per imitation LM-head chunk."})
    margin_coef: float = field(default=1.0, metadata={"help": "Scale of the per-pair `margin` column."})
    long_pair_policy: str = field(
        default="truncate", metadata={"help": "'truncate', 'drop' or 'error'.", "choices": LONG_PAIR_POLICIES}
    )
    truncation_mode: str = field(
        default="head_tail", metadata={"help": "'head_tail' or 'keep_start'.", "choices": TRUNCATION_MODES}
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
        if self.long_pair_policy not in LONG_PAIR_POLICIES:
            raise ValueError(f"long_pair_policy={self.long_pair_policy!r}: choose one of {LONG_PAIR_POLICIES}.")
        renders = self.condition_mode in ("text", AUTO_CONDITION_MODE) or self.condition_in_text
        if renders and "{condition}" not in self.condition_template:
            raise ValueError(
                f"condition_template={self.condition_template!r} has no '{{condition}}' field: add one, e.g. "
                "'Preference domain: {condition}.\\n\\n'."
            )
        if self.num_condition_tokens < 1:
            raise ValueError(f"num_condition_tokens must be >= 1, got {self.num_condition_tokens}.")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}.")
        if self.condition_learning_rate is not None and self.condition_mode != "embedding":
            raise ValueError(
                f"condition_learning_rate only applies to condition_mode='embedding' (got {self.condition_mode!r}): "
                "set condition_mode='embedding', or leave condition_learning_rate unset."
            )
        if self.condition_in_text and self.condition_mode != "embedding":
            raise ValueError(
                f"condition_in_text adds the condition's text to condition_mode='embedding' (got "
                f"{self.condition_mode!r}): set condition_mode='embedding', or condition_in_text=False."
            )
        if self.condition_in_text and self.condition_dropout > 0:
            raise ValueError(
                "condition_dropout trains pairs with the generic entry, but condition_in_text would still name their "
                "condition in the text: set one of them off."
            )
        if self.condition_dropout > 0 and self.condition_mode != "embedding":
            raise ValueError(
                f"condition_dropout only applies to condition_mode='embedding' (got {self.condition_mode!r}): set "
                "condition_mode='embedding', or condition_dropout=0."
            )
        if self.imitation_coef < 0:
            raise ValueError(f"imitation_coef must be >= 0, got {self.imitation_coef}.")
        if self.imitation_chunk_size < 1:
            raise ValueError(f"imitation_chunk_size must be >= 1, got {self.imitation_chunk_size}.")
