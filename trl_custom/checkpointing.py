# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Saving and resuming trl-custom's trainers: the model's record (`trl_custom.json`) and soft tokens beside it.

transformers' `Trainer` saves and restores `model.safetensors` or the adapter of a `checkpoint-N/` folder, the
optimizer, the scheduler, the RNG states and the data position. The soft tokens are a submodule of the model, but
[`~trl_custom.CustomRewardTrainer`] and [`~trl_custom.PersonalizedDPOTrainer`] save them beside the model
(`soft_tokens.safetensors`, so that the folder stays a plain Hugging Face model) with the record of how the model reads
its inputs, so `Trainer` alone would leave them at their fresh initialisation. [`SoftTokenCheckpointing`] writes
both, restores the soft tokens, and refuses checkpoints that do not fit the trainer.

Under DeepSpeed, `Trainer` resumes from DeepSpeed's own checkpoint (`global_stepN/`), which holds every trainable
parameter of the engine's module, the soft tokens included; under FSDP from the FSDP model file, which holds them
too. There the files beside the model are only checked, not loaded.
"""

from __future__ import annotations

import contextlib
import json
import os

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from . import trl_seams
from .record import RECORD_FILE, ModelRecord, has_record
from .soft_tokens.module import (
    SOFT_TOKENS_ATTRIBUTE,
    SOFT_TOKENS_FILE,
    SoftTokens,
    split_soft_token_state,
    weights_file,
)
from .trl_seams import IncompatibleKeys


TRAINER_STATE_FILE = "trainer_state.json"


def full_shape(param: torch.Tensor) -> tuple[int, ...]:
    """Shape of a parameter, also under DeepSpeed ZeRO-3 (where the local tensor is an empty shard)."""
    return tuple(getattr(param, "ds_shape", param.shape))


def saved_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a safetensors file, read from its header (nothing is loaded)."""
    with safe_open(path, framework="pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def check_saved_state(module: nn.Module, path: str, fix: str) -> None:
    """
    Raise, naming `path` and `fix`, unless the safetensors file `path` holds exactly `module`'s parameters with their
    shapes (trl-custom 0.1.0's key names read as today's).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing, so the checkpoint cannot be resumed. {fix}")
    from .soft_tokens.module import LEGACY_KEYS

    saved = {LEGACY_KEYS.get(key, key): shape for key, shape in saved_shapes(path).items()}
    expected = {name: full_shape(p) for name, p in module.state_dict(keep_vars=True).items()}
    if saved != expected:
        raise ValueError(
            f"{path} holds {saved}, but this trainer's {type(module).__name__} has {expected}: the checkpoint was "
            f"written by a differently configured run. {fix}"
        )


def load_saved_state(module: nn.Module, path: str, fix: str) -> None:
    """Copy the tensors of `path` into `module`'s parameters in place (the optimizer keeps the same tensors)."""
    check_saved_state(module, path, fix)
    from .soft_tokens.module import LEGACY_KEYS

    state = {LEGACY_KEYS.get(key, key): value for key, value in load_file(path).items()}
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            tensor.copy_(state[name].to(device=tensor.device, dtype=tensor.dtype))


def resolve_checkpoint(resume_from_checkpoint, output_dir: str):
    """
    The checkpoint folder to resume from: `resume_from_checkpoint` itself, or for `True` (and the strings `"true"` /
    `"last"` a command line passes) the last `checkpoint-N/` of `output_dir`. `None`/`False`: `None`.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if (
        isinstance(resume_from_checkpoint, str)
        and resume_from_checkpoint.lower() in ("true", "last")
        and not os.path.isdir(resume_from_checkpoint)
    ):
        resume_from_checkpoint = True
    if resume_from_checkpoint is True:
        found = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if found is None:
            raise ValueError(
                f"resume_from_checkpoint=True, but {output_dir} holds no checkpoint-N folder. Pass the checkpoint's "
                "path, or train without resume_from_checkpoint."
            )
        return found
    resume_from_checkpoint = str(resume_from_checkpoint)
    if not os.path.isdir(resume_from_checkpoint):
        raise FileNotFoundError(
            f"resume_from_checkpoint={resume_from_checkpoint!r} is not a folder. Pass a checkpoint-N folder written "
            "by this trainer (save_strategy='steps' or 'epoch'), or True for the last one in output_dir."
        )
    return resume_from_checkpoint


@contextlib.contextmanager
def kept_dtypes(model: nn.Module):
    """
    Give `model`'s parameters back the dtypes they had before the block. PEFT's adapter loading (what `Trainer` calls
    to resume a LoRA/QLoRA run) upcasts bf16/fp16 adapter weights to fp32 (`autocast_adapter_dtype`), so a resumed
    bf16 run would go on in another precision than the uninterrupted one. The values are unchanged (they were saved
    in the run's dtype).
    """
    dtypes = {name: param.dtype for name, param in model.named_parameters()}
    yield
    for name, param in model.named_parameters():
        if name in dtypes and param.dtype != dtypes[name]:
            param.data = param.data.to(dtypes[name])


class SoftTokenCheckpointing:
    """
    Mixin for trl-custom's trainers (listed first among their bases): `_save` writes the model's record and soft
    tokens beside it; `train(resume_from_checkpoint=...)` (a path or `True`) and `load_best_model_at_end=True` check
    that the checkpoint fits the trainer and restore the soft tokens.

    The trainer sets `self.record` ([`~trl_custom.record.ModelRecord`]) and `self.soft_tokens` (or `None`).
    """

    record: ModelRecord
    soft_tokens: SoftTokens | None = None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        soft_state = None
        if self.soft_tokens is not None:
            if state_dict is None:
                state_dict = self.accelerator.unwrap_model(self.model).state_dict()
            state_dict, soft_state = split_soft_token_state(state_dict)
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            self.record.save(output_dir)
            if self.soft_tokens is not None:
                self.soft_tokens.save(output_dir, state_dict=soft_state or None)

    def _check_resumable(self, checkpoint: str) -> None:
        """Refuse, naming the file and the fix, a checkpoint whose conditioning does not match this trainer's."""
        spec = self.record.conditioning
        fix = (
            "Resume with the conditioning options (condition_mode, conditions, num_condition_tokens, condition_model, "
            "condition_dim, num_prototypes, feature columns) the checkpoint was trained with, or start a new run: a "
            "new output_dir, without resume_from_checkpoint."
        )
        path = os.path.join(checkpoint, RECORD_FILE)
        if not has_record(checkpoint):
            if spec.mode != "none":
                raise FileNotFoundError(
                    f"{path} is missing: {checkpoint} was not written by a {type(self).__name__} conditioned "
                    f"({spec.mode} mode), so it cannot be resumed here. {fix}"
                )
            return
        saved = ModelRecord.load(checkpoint, kind=self.record.kind).conditioning
        pairs = [("mode", saved.mode, spec.mode)]
        if spec.uses_soft_tokens:
            pairs.append(("conditions", saved.conditions, spec.conditions))
            for name in ("kind", "num_tokens", "hidden_size", "dim", "num_prototypes", "num_features", "placement"):
                pairs.append((f"soft tokens' {name}", getattr(saved.tokens, name, None), getattr(spec.tokens, name)))
        if spec.renders_text:
            pairs.append(("template", saved.template, spec.template))
        differ = [(name, old, new) for name, old, new in pairs if old != new]
        if differ:
            details = "; ".join(
                f"{name}: saved {_summary(old)}, this run {_summary(new)}" for name, old, new in differ
            )
            raise ValueError(f"{path} does not match this trainer's conditioning ({details}). {fix}")
        if self.soft_tokens is not None:
            check_saved_state(
                self.soft_tokens, weights_file(checkpoint) or os.path.join(checkpoint, SOFT_TOKENS_FILE), fix
            )

    def _restore_attached(self, checkpoint: str) -> None:
        if self.soft_tokens is not None:
            fix = "Resume from a checkpoint-N folder written by this trainer (it saves the soft tokens in each)."
            path = weights_file(checkpoint) or os.path.join(checkpoint, SOFT_TOKENS_FILE)
            load_saved_state(self.soft_tokens, path, fix)

    def _restores_attached_from_files(self) -> bool:
        """Whether `Trainer` loads the model from `model.safetensors`/the adapter (not DeepSpeed's or FSDP's files)."""
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`, checking first that the checkpoint to resume from fits this trainer (see class docs)."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if checkpoint is not None:
            self._check_resumable(checkpoint)
            self._restore_token_count(checkpoint)
        return super().train(checkpoint, *args, **kwargs)

    def _restore_token_count(self, checkpoint: str) -> None:
        """TRL's `num_tokens` metric counts on from the checkpoint's last logged value instead of restarting at 0."""
        path = os.path.join(checkpoint, TRAINER_STATE_FILE)
        if not hasattr(self, "_total_train_tokens") or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            history = json.load(f).get("log_history", [])
        counts = [entry["num_tokens"] for entry in history if "num_tokens" in entry and "loss" in entry]
        if counts:
            trl_seams.set_total_train_tokens(self, int(counts[-1]))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        with kept_dtypes(model if model is not None else self.model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self._restores_attached_from_files():
            self._restore_attached(resume_from_checkpoint)

    def _load_best_model(self):
        if self._restores_attached_from_files():
            self._check_resumable(self.state.best_model_checkpoint)
        with kept_dtypes(self.model):
            super()._load_best_model()
        if self._restores_attached_from_files():
            self._restore_attached(self.state.best_model_checkpoint)

    def _issue_warnings_after_load(self, load_result):
        """
        `Trainer`'s warnings, without the attached module's keys (restored from their own files) and without tied
        weights (an LM head tied to the input embeddings is not saved, and is loaded with them).
        """
        prefix = f"{SOFT_TOKENS_ATTRIBUTE}."
        tied = getattr(self.accelerator.unwrap_model(self.model), "all_tied_weights_keys", None) or {}
        missing = [key for key in load_result.missing_keys if prefix not in key and key not in tied]
        super()._issue_warnings_after_load(IncompatibleKeys(missing, list(load_result.unexpected_keys)))


def _summary(value) -> str:
    """A value for an error message: long lists (vocabularies) by their length and first entries."""
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} entries starting {value[:5]!r}"
    return repr(value)
