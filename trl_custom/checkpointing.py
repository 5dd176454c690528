# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Resuming trainers whose model carries an attached module (condition table, user model) saved in its own files.

transformers' `Trainer` restores `model.safetensors` or the adapter of a `checkpoint-N/` folder, the optimizer, the
scheduler, the RNG states and the data position. The attached module is a submodule of the model, but
[`~trl_custom.CustomRewardTrainer`] and [`~trl_custom.PersonalizedDPOTrainer`] save it beside the model (so that the
folder stays a plain Hugging Face model), so `Trainer` alone would leave it at its fresh initialisation.
[`AttachedModuleCheckpointing`] restores it, and refuses checkpoints that do not fit the trainer.

Under DeepSpeed, `Trainer` resumes from DeepSpeed's own checkpoint (`global_stepN/`), which holds every trainable
parameter of the engine's module, the attached module included; under FSDP from the FSDP model file, which holds it
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
from torch.nn.modules.module import _IncompatibleKeys
from transformers.trainer_utils import get_last_checkpoint


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
    shapes.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing, so the checkpoint cannot be resumed. {fix}")
    saved = saved_shapes(path)
    expected = {name: full_shape(p) for name, p in module.state_dict(keep_vars=True).items()}
    if saved != expected:
        raise ValueError(
            f"{path} holds {saved}, but this trainer's {type(module).__name__} has {expected}: the checkpoint was "
            f"written by a differently configured run. {fix}"
        )


def load_saved_state(module: nn.Module, path: str, fix: str) -> None:
    """Copy the tensors of `path` into `module`'s parameters in place (the optimizer keeps the same tensors)."""
    check_saved_state(module, path, fix)
    state = load_file(path)
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


class AttachedModuleCheckpointing:
    """
    Mixin for a `Trainer` subclass whose model carries an attached module, listed first among its bases. It extends
    `train`, `_load_from_checkpoint`, `_load_best_model` and `_issue_warnings_after_load` so that
    `train(resume_from_checkpoint=...)` (a path or `True`) and `load_best_model_at_end=True` restore that module too.

    The trainer implements:
    - `_attached_attribute` (`str`): the attribute the module is registered under (`"condition_embeddings"`);
    - `_check_resumable(checkpoint)`: raise, with the file and the fix, if `checkpoint` does not fit this trainer;
    - `_restore_attached(checkpoint)`: load the module's weights from `checkpoint`'s files.
    """

    _attached_attribute: str | None = None

    def _check_resumable(self, checkpoint: str) -> None:
        raise NotImplementedError

    def _restore_attached(self, checkpoint: str) -> None:
        raise NotImplementedError

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
            self._total_train_tokens = int(counts[-1])

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
        prefix = f"{self._attached_attribute}."
        tied = getattr(self.accelerator.unwrap_model(self.model), "all_tied_weights_keys", None) or {}
        missing = [key for key in load_result.missing_keys if prefix not in key and key not in tied]
        super()._issue_warnings_after_load(_IncompatibleKeys(missing, list(load_result.unexpected_keys)))
