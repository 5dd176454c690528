# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The soft-token module: condition id -> `(num_tokens, hidden)` input embeddings, in three variants of one table.

- `"table"`: `tokens(c) = table[c]`, a free `num_tokens x hidden` block per condition; row 0 is the generic entry.
  What a reward model's `condition_mode="embedding"` learns; it needs enough pairs per condition.
- `"lowrank"`: `tokens(c) = generic + basis(v_c)`: a shared generic block plus a `dim`-sized vector per condition
  times a shared basis (zero at the start, so every condition starts as the generic one). P-RLHF's individual user
  model; with a small `dim`, conditions share structure.
- `"prototype"`: `tokens(c) = generic + basis(softmax(w_c) @ prototypes)`: each condition a weight vector over
  `num_prototypes` shared prototypes (PAL's ideal-point mixture; P-RLHF's cluster user model).

Id 0 is always the generic entry (for the two factored variants: the generic block alone). Optional per-row feature
vectors add `feature_proj(features)` to a condition's vector. With `placement="reward_head"` a condition's one token
is a vector at a reward model's head instead (see `head.py`): the same three variants, as user models there. The
module is attached to the Hugging Face model as a submodule named `soft_tokens` (after PEFT wrapping, so it stays
trainable and DDP/DeepSpeed see it) and saved beside the model as `soft_tokens.safetensors`, its configuration in the
model's record.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..models import unwrap_peft
from .head import head_linear
from .spec import SoftTokenConfig


SOFT_TOKENS_ATTRIBUTE = "soft_tokens"
SOFT_TOKENS_FILE = "soft_tokens.safetensors"
# trl-custom 0.1.0 saved the reward model's table and P-DPO's user model in files of their own
LEGACY_TABLE_FILE = "condition_embeddings.safetensors"
LEGACY_USER_MODEL_FILE = "user_model.safetensors"
LEGACY_KEYS = {
    "weight": "table",
    "individual.weight": "vectors",
    "user_weights.weight": "weights",
    "proj.weight": "basis.weight",
}
_ROW_PARAMETER = {"table": "table", "lowrank": "vectors", "prototype": "weights"}


class SoftTokens(nn.Module):
    """
    `(batch,)` condition ids (and optional `(batch, num_features)` features) -> `(batch, num_tokens, hidden)` soft
    tokens. See the module docstring for the variants.

    Args:
        config ([`SoftTokenConfig`]): Variant and sizes.
        num_conditions (`int`): Known conditions; the module has `num_conditions + 1` rows (row 0: generic).
        init_std (`float`): Spread of the initial tokens; match the model's token embeddings.
    """

    def __init__(self, config: SoftTokenConfig, num_conditions: int, init_std: float = 0.02):
        super().__init__()
        self.config = config
        k, h, d, rows = config.num_tokens, config.hidden_size, config.dim, num_conditions + 1
        if config.kind == "table":
            self.table = nn.Parameter(torch.randn(rows, k, h) * init_std)
            return
        self.generic = nn.Parameter(torch.randn(k, h) * init_std)
        if config.kind == "lowrank":
            self.vectors = nn.Parameter(torch.randn(rows, d))
        else:
            self.weights = nn.Parameter(torch.randn(rows, config.num_prototypes))
            self.prototypes = nn.Parameter(torch.randn(config.num_prototypes, d))
        self.feature_proj = nn.Linear(config.num_features, d, bias=False) if config.num_features else None
        self.basis = nn.Linear(d, k * h, bias=False)
        nn.init.zeros_(self.basis.weight)

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def rows(self) -> nn.Parameter:
        """The per-condition parameter, one row per condition id (row 0: generic): what cold start fits."""
        return getattr(self, _ROW_PARAMETER[self.config.kind])

    @property
    def num_rows(self) -> int:
        return _full_shape(self.rows)[0]

    def tokens_of_rows(self, rows: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Soft tokens `(n, num_tokens, hidden)` of `n` row values (rows of [`rows`], not ids, not row 0)."""
        if self.config.kind == "table":
            return rows
        vectors = rows if self.config.kind == "lowrank" else torch.softmax(rows, dim=-1) @ self.prototypes
        if self.feature_proj is not None and features is not None:
            vectors = vectors + self.feature_proj(features.to(vectors.dtype))
        k, h = self.config.num_tokens, self.config.hidden_size
        return self.generic.unsqueeze(0) + self.basis(vectors).view(-1, k, h)

    def forward(self, condition_ids: torch.LongTensor, features: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.rows[condition_ids]
        if self.config.kind == "table":
            return rows
        tokens = self.tokens_of_rows(rows, features)
        generic = self.generic.unsqueeze(0).expand_as(tokens)
        return torch.where((condition_ids == 0)[:, None, None], generic, tokens)  # id 0: the generic block alone

    @torch.no_grad()
    def add_row(self, values: torch.Tensor) -> int:
        """Append a row (a new condition) holding `values`; returns its id. The optimizer, if any, is not updated."""
        rows = self.rows
        grown = torch.cat([rows.detach(), values.detach().to(rows.dtype).unsqueeze(0)])
        setattr(self, _ROW_PARAMETER[self.config.kind], nn.Parameter(grown, requires_grad=rows.requires_grad))
        return grown.shape[0] - 1

    def extend_to(self, num_conditions: int) -> None:
        """Add rows, each starting as the generic entry (table: a copy of row 0; factored: zeros, i.e. the generic
        tokens / the prototypes' mean), until there are `num_conditions` conditions: new ones a model meets when it
        goes on training. Call it before the optimizer is built."""
        for _ in range(self.num_rows, num_conditions + 1):
            start = self.rows[0] if self.config.kind == "table" else torch.zeros_like(self.rows[0])
            self.add_row(start)

    def save(self, directory: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write the weights (`soft_tokens.safetensors`); the configuration goes into the model's record."""
        state = state_dict if state_dict is not None else self.state_dict()
        save_file(
            {key: value.detach().contiguous().cpu() for key, value in state.items()},
            os.path.join(directory, SOFT_TOKENS_FILE),
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, config: SoftTokenConfig) -> SoftTokens:
        """The module saved in `directory` (also in trl-custom 0.1.0's files) with `config`."""
        state = load_weights(directory)
        module = cls(config, num_conditions=state[_ROW_PARAMETER[config.kind]].shape[0] - 1)
        module.load_state_dict(state)
        return module


def weights_file(directory: str | os.PathLike) -> str | None:
    """The soft-token weights file of a saved folder (or of trl-custom 0.1.0's layouts), if any."""
    for name in (SOFT_TOKENS_FILE, LEGACY_TABLE_FILE, LEGACY_USER_MODEL_FILE):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The soft-token state dict saved in `directory`, 0.1.0's key names mapped to today's."""
    path = weights_file(directory)
    if path is None:
        raise FileNotFoundError(
            f"{os.path.join(directory, SOFT_TOKENS_FILE)} is missing: {directory} records soft tokens, but their "
            "weights were not saved with it."
        )
    state = load_file(path)
    if os.path.basename(path) == SOFT_TOKENS_FILE:
        return state
    return {LEGACY_KEYS.get(key, key): value for key, value in state.items()}


def _full_shape(param: torch.Tensor) -> tuple[int, ...]:
    return tuple(getattr(param, "ds_shape", param.shape))  # ds_shape: the full shape under DeepSpeed ZeRO-3


# ---------------------------------------------------------------------------------------------------- attaching
def get_soft_tokens(model: nn.Module) -> SoftTokens | None:
    """The soft-token module attached to a (possibly PEFT- or DDP-wrapped) model, if any."""
    for module in model.modules():
        found = getattr(module, SOFT_TOKENS_ATTRIBUTE, None)
        if isinstance(found, SoftTokens):
            return found
    return None


@dataclass
class EmbeddingStats:
    """Width, spread and placement of a model's input embeddings (what soft tokens are sized and set up from)."""

    hidden_size: int
    device: torch.device
    dtype: torch.dtype
    std: float | None = None  # only when asked for: it reads (under ZeRO-3: gathers) the whole matrix


def input_embedding_stats(model: nn.Module, with_std: bool = False) -> EmbeddingStats:
    """`EmbeddingStats` of `model.get_input_embeddings()`, also under DeepSpeed ZeRO-3 (an empty local shard)."""
    weight = model.get_input_embeddings().weight
    stats = EmbeddingStats(hidden_size=_full_shape(weight)[-1], device=weight.device, dtype=weight.dtype)
    if with_std:
        gathered = nullcontext()
        if hasattr(weight, "ds_id"):
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters([weight], modifier_rank=None)
        with gathered:
            stats.std = float(weight.detach().float().std())
    return stats


def new_soft_tokens(model: nn.Module, config: SoftTokenConfig, num_conditions: int) -> SoftTokens:
    """A new module for `model`, not attached yet: sized and initialised from its input embeddings, or at the reward
    head (`placement="reward_head"`) sized from the head's input and zero: every condition starts as the head."""
    if config.placement == "reward_head":
        config.hidden_size = head_linear(model).in_features
        return SoftTokens(config, num_conditions, init_std=0.0)
    stats = input_embedding_stats(model, with_std=True)
    config.hidden_size = stats.hidden_size
    return SoftTokens(config, num_conditions, init_std=stats.std)


def attach_soft_tokens(model: nn.Module, module: SoftTokens) -> SoftTokens:
    """
    Register `module` as the `soft_tokens` submodule of the underlying Hugging Face model (the PEFT base model when
    wrapped), on the embeddings' device and (floating) dtype, trainable. Attach after PEFT wrapping.
    """
    if module.config.placement == "reward_head":
        weight = head_linear(model).weight
        stats = EmbeddingStats(hidden_size=_full_shape(weight)[-1], device=weight.device, dtype=weight.dtype)
        where = "reward head reads features of width"
    else:
        stats = input_embedding_stats(model)
        where = "embeddings have"
    if module.config.hidden_size != stats.hidden_size:
        raise ValueError(
            f"The soft tokens have hidden size {module.config.hidden_size} but the model's {where} "
            f"{stats.hidden_size}: they were trained for another backbone. Train new ones for this model."
        )
    dtype = stats.dtype if stats.dtype.is_floating_point else torch.float32
    module.to(device=stats.device, dtype=dtype)
    module.requires_grad_(True)
    setattr(unwrap_peft(model), SOFT_TOKENS_ATTRIBUTE, module)
    return module


def split_soft_token_state(state_dict: dict) -> tuple[dict, dict]:
    """A model's `state_dict` split into its own entries and the soft tokens' (keyed relative to the module)."""
    prefix = f"{SOFT_TOKENS_ATTRIBUTE}."
    own = {key: value for key, value in state_dict.items() if prefix not in key}
    attached = {key.split(prefix, 1)[1]: value for key, value in state_dict.items() if prefix in key}
    return own, attached


def with_own_learning_rate(optimizer, module: nn.Module, learning_rate: float | None):
    """Move `module`'s parameters into their own optimizer group (no weight decay) with `learning_rate`."""
    if learning_rate is None:
        return optimizer
    params = list(module.parameters())
    ids = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": params, "lr": learning_rate, "weight_decay": 0.0})
    return optimizer
