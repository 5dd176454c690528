# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The user model of P-RLHF / P-DPO: user id (+ optional features) -> soft-token embeddings for the policy.

soft tokens(u) = generic + proj(individual(u))

- `generic` (`num_tokens x hidden`) is shared by every user: it is what an unknown user, or user id 0, gets;
- `individual(u)` is a small per-user vector (`user_dim`): a free row per user (`user_model_type="individual"`) or a
  mixture of `num_clusters` shared prototypes (`"cluster"`: low-rank, users share structure), plus a linear map of
  the user's features when `num_features > 0`;
- `proj` maps it to `num_tokens x hidden`; it starts at zero, so every user starts as the generic user.

User ids are strings mapped through a saved vocabulary (`user_model.json`); index 0 is reserved for the generic user.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..attached_modules import attach, find_attached, input_embedding_stats


USER_MODEL_CONFIG_FILE = "user_model.json"
USER_MODEL_WEIGHTS_FILE = "user_model.safetensors"
USER_MODEL_ATTRIBUTE = "user_model"
GENERIC_USER = "generic"


@dataclass
class UserModelConfig:
    """
    Shape of a [`UserModel`].

    Args:
        users (`list[str]`): Known user ids; user `users[i]` has index `i + 1`.
        hidden_size (`int`): Width of the policy's input embeddings.
        num_tokens (`int`): Soft tokens prepended to the policy input.
        user_dim (`int`): Size of the per-user vector.
        user_model_type (`str`): `"individual"` (one free vector per user) or `"cluster"` (mixture of prototypes).
        num_clusters (`int`): Prototypes of the cluster variant.
        num_features (`int`): Size of optional per-user feature vectors (0: none).
        strict (`bool`): Raise on unknown user ids instead of using the generic user.
    """

    users: list[str] = field(default_factory=list)
    hidden_size: int = 0
    num_tokens: int = 4
    user_dim: int = 32
    user_model_type: str = "individual"
    num_clusters: int = 8
    num_features: int = 0
    strict: bool = False

    def __post_init__(self):
        self.users = [str(u) for u in self.users]
        if self.user_model_type not in ("individual", "cluster"):
            raise ValueError(f"user_model_type={self.user_model_type!r}: choose 'individual' or 'cluster'.")
        if len(set(self.users)) != len(self.users):
            raise ValueError("Duplicate user ids in `users`.")
        if GENERIC_USER in self.users:
            raise ValueError(f"{GENERIC_USER!r} is reserved for the generic user; rename that user id.")


class UserModel(nn.Module):
    """Maps user indices (and features) to `(batch, num_tokens, hidden)` soft-token embeddings. See module docs."""

    def __init__(self, config: UserModelConfig, init_std: float = 0.02):
        super().__init__()
        self.config = config
        self._index = {user: i + 1 for i, user in enumerate(config.users)}
        k, h, d = config.num_tokens, config.hidden_size, config.user_dim
        self.generic = nn.Parameter(torch.randn(k, h) * init_std)
        rows = len(config.users) + 1
        # The only place that tells the two variants apart: the per-user table holds either the individual vectors
        # themselves or mixture weights over shared prototypes ("cluster"); see `user_table` and `row_vectors`.
        if config.user_model_type == "individual":
            self._table_name = "individual"
            self.individual = nn.Embedding(rows, d)
            nn.init.normal_(self.individual.weight, std=1.0)
            self.register_parameter("prototypes", None)
        else:
            self._table_name = "user_weights"
            self.user_weights = nn.Embedding(rows, config.num_clusters)
            nn.init.normal_(self.user_weights.weight, std=1.0)
            self.prototypes = nn.Parameter(torch.randn(config.num_clusters, d))
        self.feature_proj = nn.Linear(config.num_features, d, bias=False) if config.num_features else None
        self.proj = nn.Linear(d, k * h, bias=False)
        nn.init.zeros_(self.proj.weight)

    @property
    def user_table(self) -> nn.Embedding:
        """One row per user (row 0: the generic user): the individual vectors, or the cluster mixture weights."""
        return getattr(self, self._table_name)

    def user_index(self, user: Any, where: str = "") -> int:
        """Index of a user id: 0 (generic) for `None`/`""`/unknown ids, unless strict (then unknown ids raise)."""
        return lookup_user(self._index, user, self.config.strict, where)

    def row_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Individual vectors of user-table rows: the rows themselves, or their softmax mixture of the prototypes."""
        return rows if self.prototypes is None else torch.softmax(rows, dim=-1) @ self.prototypes

    def individual_vectors(self, user_ids: torch.LongTensor, features: torch.Tensor | None = None) -> torch.Tensor:
        vectors = self.row_vectors(self.user_table(user_ids))
        if self.feature_proj is not None and features is not None:
            vectors = vectors + self.feature_proj(features.to(vectors.dtype))
        return vectors * (user_ids != 0).unsqueeze(-1).to(vectors.dtype)  # index 0: the generic user only

    def soft_tokens(self, vectors: torch.Tensor) -> torch.Tensor:
        """`(batch, num_tokens, hidden)` soft tokens of individual vectors: `generic + proj(vectors)`."""
        k, h = self.config.num_tokens, self.config.hidden_size
        return self.generic.unsqueeze(0) + self.proj(vectors).view(-1, k, h)

    def forward(self, user_ids: torch.LongTensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.soft_tokens(self.individual_vectors(user_ids, features))

    def add_user(self, user: str) -> int:
        """Append a new user (initialised as the generic user) and return its index; used for cold start."""
        user = str(user)
        if user in self._index:
            return self._index[user]
        table = self.user_table
        new_row = torch.zeros(1, table.weight.shape[1], dtype=table.weight.dtype, device=table.weight.device)
        grown = nn.Embedding(table.weight.shape[0] + 1, table.weight.shape[1]).to(
            table.weight.device, table.weight.dtype
        )
        with torch.no_grad():
            grown.weight.copy_(torch.cat([table.weight, new_row]))
        setattr(self, self._table_name, grown)
        self.config.users.append(user)
        self._index[user] = len(self.config.users)
        return self._index[user]

    def save_pretrained(self, directory: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        os.makedirs(directory, exist_ok=True)
        state = state_dict if state_dict is not None else self.state_dict()
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in state.items()},
            os.path.join(directory, USER_MODEL_WEIGHTS_FILE),
        )
        with open(os.path.join(directory, USER_MODEL_CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(asdict(self.config), f, indent=2)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> UserModel:
        path = os.path.join(directory, USER_MODEL_CONFIG_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: {directory} was not saved by PersonalizedDPOTrainer.")
        with open(path, encoding="utf-8") as f:
            model = cls(UserModelConfig(**json.load(f)))
        model.load_state_dict(load_file(os.path.join(directory, USER_MODEL_WEIGHTS_FILE)))
        return model


def lookup_user(index: dict[str, int], user: Any, strict: bool, where: str = "") -> int:
    """Row of `user` in `index` (id -> row); 0, the generic user, for `None`, `""` and unknown ids unless `strict`."""
    if user is None or (isinstance(user, str) and not user):
        return 0
    found = index.get(str(user))
    if found is None:
        if strict:
            raise ValueError(
                f"Unknown user_id={user!r}{where}: it is not in the user table ({len(index)} users). Add it to "
                "`users`, fit it with `fit_new_user`, or set `strict_users=False` to treat it as the generic user."
            )
        return 0
    return found


def get_user_model(model: nn.Module) -> UserModel | None:
    """The user model attached to a (possibly PEFT- or DDP-wrapped) policy, if any."""
    return find_attached(model, USER_MODEL_ATTRIBUTE, UserModel)


def attach_user_model(policy: nn.Module, user_model: UserModel) -> UserModel:
    """Register `user_model` as a trainable submodule of the policy (after PEFT wrapping, so it is not frozen)."""
    embeddings = input_embedding_stats(policy)
    hidden = embeddings.hidden_size
    if user_model.config.hidden_size != hidden:
        raise ValueError(
            f"The user table has hidden size {user_model.config.hidden_size} but the policy's embeddings have "
            f"{hidden}: "
            "the user model was trained for another backbone. Train a new user model for this policy."
        )
    dtype = embeddings.dtype if embeddings.dtype.is_floating_point else torch.float32
    user_model.to(device=embeddings.device, dtype=dtype)
    return attach(policy, USER_MODEL_ATTRIBUTE, user_model)


def prepend_user_tokens(
    policy: nn.Module, soft_tokens: torch.Tensor, input_ids: torch.LongTensor, attention_mask: torch.LongTensor
) -> dict[str, torch.Tensor]:
    """`inputs_embeds` and `attention_mask` with the user's soft tokens in front of each (right-padded) sequence."""
    embeds = policy.get_input_embeddings()(input_ids)
    soft_tokens = soft_tokens.to(embeds.dtype)
    mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], soft_tokens.shape[1]), attention_mask], dim=1)
    return {"inputs_embeds": torch.cat([soft_tokens, embeds], dim=1), "attention_mask": mask}
