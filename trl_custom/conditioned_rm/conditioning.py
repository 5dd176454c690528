# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Conditioning of a reward model on a domain or user: the spec, the soft-token table and the shared forward pass.

Two modes condition a reward model on the value of a dataset column (a domain such as `"academy"`, or a user id):

- `"text"`: the condition is rendered into the input with a template, so the trained model is a plain
  `AutoModelForSequenceClassification` that any pipeline loads.
- `"embedding"`: a learned table of `num_tokens` soft-token embeddings per condition is inserted into the input
  embeddings right after the first token (BOS/CLS stays first). Row 0 of the table is the shared *generic* entry,
  used for absent or unknown conditions.

Everything that must be identical at training and at scoring time (tokenization, the forward pass, save/load of the
table) lives here, so [`CustomRewardTrainer`] and [`RewardScorer`] cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..attached_modules import attach, find_attached, input_embedding_stats
from ..models import unwrap_peft
from ..packing import VARLEN_PACKING_ATTENTION, attention_implementation, pack, plan_packing, unpack


CONDITIONING_FILE = "conditioning.json"
CONDITION_EMBEDDINGS_FILE = "condition_embeddings.safetensors"
CONDITION_TABLE_ATTRIBUTE = "condition_embeddings"
GENERIC_CONDITION = "generic"
CONDITION_MODES = ("none", "text", "embedding")


@dataclass
class ConditioningSpec:
    """
    What a conditioned reward model was trained with; saved beside the weights as `conditioning.json`.

    Args:
        mode (`str`): `"none"`, `"text"` or `"embedding"`.
        column (`str`): Dataset column holding the condition (e.g. `"domain"` or `"user_id"`).
        conditions (`list[str]`): Known condition values. Embedding row `i + 1` belongs to `conditions[i]`; row 0 is
            the generic entry.
        template (`str`): Text-mode template with a `{condition}` field, prepended to the prompt (standard format) or
            used as the system message (conversational format).
        num_tokens (`int`): Soft tokens per condition (embedding mode).
        strict (`bool`): Raise on unknown condition values instead of falling back to the generic entry.
        in_text (`bool`): Embedding mode: the condition is also rendered into the input with `template` (text and
            soft tokens together).
    """

    mode: str = "none"
    column: str = "domain"
    conditions: list[str] = field(default_factory=list)
    template: str = "Preference domain: {condition}.\n\n"
    num_tokens: int = 4
    strict: bool = False
    in_text: bool = False

    def __post_init__(self):
        if self.mode not in CONDITION_MODES:
            raise ValueError(f"Unknown condition mode {self.mode!r}; choose one of {CONDITION_MODES}.")
        if self.in_text and self.mode != "embedding":
            raise ValueError(f"in_text=True adds the condition's text to embedding mode, not to mode {self.mode!r}.")
        self.conditions = [str(c) for c in self.conditions]
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"Duplicate values in `conditions`: {self.conditions}.")

    @property
    def renders_text(self) -> bool:
        """Whether the condition is rendered into the input text (text mode, or embedding mode with `in_text`)."""
        return self.mode == "text" or self.in_text

    @property
    def names(self) -> list[str]:
        """Name of each condition id: id 0 is the generic entry."""
        return [GENERIC_CONDITION] + self.conditions

    def condition_id(self, value: Any, where: str = "") -> int:
        """Table row of a condition value: 0 (generic) for `None`/`""` and, unless strict, for unknown values."""
        if is_missing_condition(value):
            return 0
        try:
            return self.conditions.index(str(value)) + 1
        except ValueError:
            if self.strict:
                raise ValueError(
                    f"Unknown {self.column}={value!r}{where}; known values: {self.conditions}. Add it to "
                    "`conditions`, or set `strict_conditions=False` to score it with the generic entry."
                ) from None
            return 0

    def render(self, value: Any) -> str:
        """Text-mode prefix for a condition value (`""` for an absent condition: the generic user)."""
        return "" if is_missing_condition(value) else self.template.format(condition=value)

    def save(self, directory: str | os.PathLike) -> None:
        with open(os.path.join(directory, CONDITIONING_FILE), "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ConditioningSpec:
        """Spec saved in `directory`, or an unconditioned spec when there is none (a plain reward model)."""
        path = os.path.join(directory, CONDITIONING_FILE)
        if not os.path.isfile(path):
            return cls(mode="none")
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))


def is_missing_condition(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


class ConditionEmbedding(nn.Module):
    """
    Table of `num_tokens` soft-token embeddings for each condition, plus the shared generic entry at row 0.

    Args:
        num_conditions (`int`): Number of known conditions (the table has `num_conditions + 1` rows).
        num_tokens (`int`): Soft tokens per condition.
        hidden_size (`int`): Width of the model's input embeddings.
        init_std (`float`): Standard deviation of the initial values; match the model's token embeddings.
    """

    def __init__(self, num_conditions: int, num_tokens: int, hidden_size: int, init_std: float = 0.02):
        super().__init__()
        self.num_tokens = num_tokens
        self.weight = nn.Parameter(torch.randn(num_conditions + 1, num_tokens, hidden_size) * init_std)

    @property
    def hidden_size(self) -> int:
        return getattr(self.weight, "ds_shape", self.weight.shape)[-1]  # ds_shape: the full shape under ZeRO-3

    def forward(self, condition_ids: torch.LongTensor) -> torch.Tensor:
        return self.weight[condition_ids]


def get_condition_table(model: nn.Module) -> ConditionEmbedding | None:
    """The condition table attached to a (possibly PEFT- or DDP-wrapped) model, if any."""
    return find_attached(model, CONDITION_TABLE_ATTRIBUTE, ConditionEmbedding)


def attach_condition_table(model: nn.Module, spec: ConditioningSpec) -> ConditionEmbedding:
    """Create (or check) the condition table of `model` for `spec` and register it as a trainable submodule."""
    table = get_condition_table(model)
    embeddings = input_embedding_stats(model, with_std=table is None)  # the spread initialises a new table
    hidden_size = embeddings.hidden_size
    if table is not None:
        if table.hidden_size != hidden_size:
            raise ValueError(
                f"The condition table has hidden size {table.hidden_size} but the model's embeddings have "
                f"{hidden_size}: the table was trained for another backbone. Train a new table for this model."
            )
        expected = (len(spec.conditions) + 1, spec.num_tokens)
        if tuple(table.weight.shape[:2]) != expected:
            raise ValueError(
                f"The model's condition table has shape {tuple(table.weight.shape[:2])} (conditions + 1, tokens) "
                f"but the conditioning spec needs {expected}."
            )
        return table
    table = ConditionEmbedding(len(spec.conditions), spec.num_tokens, hidden_size, init_std=embeddings.std)
    table.to(device=embeddings.device, dtype=embeddings.dtype)
    return attach(model, CONDITION_TABLE_ATTRIBUTE, table)


def save_condition_table(table_state: torch.Tensor, directory: str | os.PathLike) -> None:
    save_file({"weight": table_state.detach().contiguous().cpu()}, os.path.join(directory, CONDITION_EMBEDDINGS_FILE))


def load_condition_table_weights(directory: str | os.PathLike) -> torch.Tensor:
    path = os.path.join(directory, CONDITION_EMBEDDINGS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: {directory} was saved by an embedding-mode trainer, but without its condition table."
        )
    return load_file(path)["weight"]


def check_position_budget(config: Any, max_length: int | None, num_tokens: int) -> None:
    """Raise if `max_length` tokens plus `num_tokens` soft tokens exceed the positions of the model of `config`."""
    max_positions = getattr(config.get_text_config(), "max_position_embeddings", None)
    if max_length is not None and max_positions is not None and max_length + num_tokens > max_positions:
        raise ValueError(
            f"max_length={max_length} plus {num_tokens} condition tokens exceeds the model's {max_positions} "
            f"positions. Set max_length <= {max_positions - num_tokens}."
        )


def uses_last_token_pooling(model: nn.Module) -> bool:
    """True for decoder reward models (a `score` head read at the last token), False for CLS-pooled encoders."""
    inner = unwrap_peft(model)
    return hasattr(inner, "score")


def insert_condition_tokens(
    base_model: nn.Module,
    table: ConditionEmbedding,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    condition_ids: torch.LongTensor,
    extra: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """
    Build `inputs_embeds` with the condition's soft tokens inserted after the first token.

    For last-token-pooled (decoder) models the rows are re-aligned to the right (padding moved to the left) with
    explicit `position_ids`, so that the model's "last position" is each sequence's last real token even though
    padding cannot be detected from `inputs_embeds`. `extra` (a per-token tensor such as a completion mask) goes
    through the same re-arrangement.

    Returns:
        `dict` with `inputs_embeds`, `attention_mask`, `input_ids` (aligned; soft positions hold the first token),
        optional `position_ids` and `extra`.
    """
    k = table.num_tokens
    token_embeds = base_model.get_input_embeddings()(input_ids)
    soft = table(condition_ids).to(token_embeds.dtype)
    batch = input_ids.shape[0]

    def splice(tensor, filler):
        return torch.cat([tensor[:, :1], filler, tensor[:, 1:]], dim=1)

    out = {
        "inputs_embeds": splice(token_embeds, soft),
        "attention_mask": splice(attention_mask, attention_mask.new_ones(batch, k)),
        "input_ids": splice(input_ids, input_ids[:, :1].expand(batch, k)),
    }
    if extra is not None:
        out["extra"] = splice(extra, extra.new_zeros(batch, k))
    if uses_last_token_pooling(base_model):
        mask = out["attention_mask"]
        length = mask.shape[1]
        shift = length - mask.sum(dim=1, keepdim=True)
        index = (torch.arange(length, device=mask.device).unsqueeze(0) - shift) % length
        for key in list(out):
            value = out[key]
            gather_index = index if value.dim() == 2 else index.unsqueeze(-1).expand_as(value)
            out[key] = value.gather(1, gather_index)
        out["position_ids"] = (out["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
    return out


def conditioned_inputs(
    base_model: nn.Module,
    table: ConditionEmbedding | None,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    condition_ids: torch.LongTensor | None = None,
    completion_mask: torch.Tensor | None = None,
) -> dict[str, Any]:
    """
    A batch as the reward model receives it, shared by the padded and the packed forward: without a table the token
    ids as given; with one, the condition's soft tokens inserted (see [`insert_condition_tokens`]; a missing
    `condition_ids` means the generic entry for every row).

    Returns:
        `dict` with `model_inputs` (`input_ids`, or `inputs_embeds` and the optional `position_ids`), and the
        `attention_mask`, `input_ids` and `completion_mask` aligned with them.
    """
    if table is None:
        return {
            "model_inputs": {"input_ids": input_ids},
            "attention_mask": attention_mask,
            "input_ids": input_ids,
            "completion_mask": completion_mask,
        }
    if condition_ids is None:
        condition_ids = input_ids.new_zeros(input_ids.shape[0])
    inputs = insert_condition_tokens(base_model, table, input_ids, attention_mask, condition_ids, completion_mask)
    model_inputs = {key: inputs[key] for key in ("inputs_embeds", "position_ids") if key in inputs}
    return {
        "model_inputs": model_inputs,
        "attention_mask": inputs["attention_mask"],
        "input_ids": inputs["input_ids"],
        "completion_mask": inputs.get("extra"),
    }


def reward_forward(
    model: nn.Module,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    condition_ids: torch.LongTensor | None = None,
    table: ConditionEmbedding | None = None,
    completion_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
    base_model: nn.Module | None = None,
    padding_free: bool = False,
) -> dict[str, Any]:
    """
    Rewards of a batch of sequences, with the condition's soft tokens when `table` is given.

    Without a table this is exactly `model(input_ids, attention_mask)`, as in TRL's `RewardTrainer`. `model` is
    called as given (so a DDP/DeepSpeed wrapper sees the forward); `base_model` is its unwrapped module (defaults to
    `model`), used to look up token embeddings. With `padding_free`, the sequences are packed (see
    [`packed_reward_forward`]).

    Returns:
        `dict` with `rewards` (batch,), and when `output_hidden_states`: `hidden` (last hidden states), `input_ids`
        and `completion_mask` aligned with them.
    """
    if padding_free:
        return packed_reward_forward(
            model, input_ids, attention_mask, condition_ids, table, completion_mask, output_hidden_states, base_model
        )
    inputs = conditioned_inputs(base_model or model, table, input_ids, attention_mask, condition_ids, completion_mask)
    outputs = model(
        **inputs["model_inputs"],
        attention_mask=inputs["attention_mask"],
        use_cache=False,
        output_hidden_states=output_hidden_states,
    )
    result = {
        "rewards": outputs.logits.squeeze(-1),
        "input_ids": inputs["input_ids"],
        "completion_mask": inputs["completion_mask"],
    }
    if output_hidden_states:
        result["hidden"] = outputs.hidden_states[-1]
    return result


def reward_head(model: nn.Module) -> nn.Module:
    """The last-token reward head (`score`) of a (possibly PEFT-wrapped) decoder reward model."""
    inner = unwrap_peft(model)
    return inner.score


@contextlib.contextmanager
def captured_outputs(module: nn.Module):
    """Collect what `module` returns while the block runs (a forward hook, removed on exit)."""
    outputs = []
    handle = module.register_forward_hook(lambda _module, _args, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def packed_reward_forward(
    model: nn.Module,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    condition_ids: torch.LongTensor | None = None,
    table: ConditionEmbedding | None = None,
    completion_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
    base_model: nn.Module | None = None,
) -> dict[str, Any]:
    """
    [`reward_forward`] on packed rows: the same inputs (condition tokens inserted per sequence exactly as on the
    padded path) packed with restarting `position_ids` and no attention mask. The model's own pooling reads one
    position per row, so the reward head's per-token output is captured during the forward (inside it, so DDP,
    DeepSpeed and PEFT wrappers see a normal call) and read at each sequence's last token. Decoder reward models only
    (see [`~trl_custom.packing.check_packable`]).

    Returns the same keys as [`reward_forward`]; `hidden`, `input_ids` and `completion_mask` are unpacked back to the
    padded layout, so the imitation loss sees the same tokens in the same order.
    """
    base_model = base_model or model
    inputs = conditioned_inputs(base_model, table, input_ids, attention_mask, condition_ids, completion_mask)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    layout = plan_packing(mask, single_row=attention_implementation(base_model) in VARLEN_PACKING_ATTENTION)
    # Packed rows restart `position_ids` per sequence, which replaces the padded path's re-aligned positions.
    model_inputs = {key: pack(value, layout) for key, value in inputs["model_inputs"].items() if key != "position_ids"}
    with captured_outputs(reward_head(base_model)) as scores:
        outputs = model(
            **model_inputs,
            attention_mask=None,
            position_ids=layout.position_ids,
            use_cache=False,
            output_hidden_states=output_hidden_states,
        )
    result = {
        "rewards": scores[-1][layout.last].squeeze(-1),
        "input_ids": ids,
        "completion_mask": inputs["completion_mask"],
    }
    if output_hidden_states:
        result["hidden"] = unpack(outputs.hidden_states[-1], layout, like=mask)
    return result
