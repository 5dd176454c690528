# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""TRL's (and transformers') private seams, in one place.

trl-custom extends TRL's trainers by subclassing them. Where that needs a name TRL (or transformers) keeps private
(`_metrics`, `_total_train_tokens`, `_tokenize`, ...), it goes through this module, so that a TRL upgrade that moves
one breaks here, in one file. Two kinds of seams remain outside it, and are checked against the installed TRL by
`tests/test_trl_seams.py`:

- [`OVERRIDDEN`]: private methods our trainers override (and call with `super()`): each must still exist, with the
  parameters we pass on;
- [`MIRRORED`]: TRL blocks whose behaviour trl-custom repeats where TRL offers no call to reuse (the metrics of
  `RewardTrainer.compute_loss` for listwise batches, the length-desensitized log-prob sum of `DPOTrainer`, the
  string-model loading block of `RewardTrainer.__init__`): the source of each is fingerprinted, so that a TRL
  release that edits one fails that test and points at the code to re-check, instead of drifting silently.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
from typing import Any

import torch
from torch.nn.modules.module import _IncompatibleKeys as IncompatibleKeys  # noqa: F401 (re-exported)
from trl.data_utils import _tokenize as tokenize  # noqa: F401 (re-exported: TRL's tokenization of text/messages)


# ---------------------------------------------------------------------------------------------------- trainer state
def metrics(trainer, mode: str) -> dict[str, list]:
    """TRL's per-mode metric lists (`trainer._metrics[mode]`), averaged and cleared by TRL's `log`."""
    return trainer._metrics[mode]


def total_train_tokens(trainer) -> int:
    return trainer._total_train_tokens


def set_total_train_tokens(trainer, value: int) -> None:
    """Set TRL's `num_tokens` counter (and its metric)."""
    trainer._total_train_tokens = int(value)
    trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]


def count_train_tokens(trainer, attention_mask: torch.Tensor) -> None:
    """Add a batch's tokens to TRL's `num_tokens` counter as TRL's `RewardTrainer.compute_loss` does."""
    tokens = trainer.accelerator.gather_for_metrics(attention_mask.sum()).sum().item()
    trainer._total_train_tokens += tokens // trainer._tp_size


def is_vision_dataset(trainer) -> bool:
    return bool(getattr(trainer, "_is_vision_dataset", False))


def signature_columns(trainer) -> list[str] | None:
    return trainer._signature_columns


def set_signature_columns(trainer, columns: list[str]) -> None:
    trainer._signature_columns = list(columns)


def name_or_path(model) -> str:
    """The folder or Hub id a model was loaded from (`config._name_or_path`)."""
    return str(getattr(model.config, "_name_or_path", "") or "")


def attention_implementation(config) -> str:
    return str(getattr(config, "_attn_implementation", None) or "eager")


def ignore_ddp_buffers(model, names: list[str]) -> None:
    """TRL's `ignore_bias_buffers`: keep these buffers out of DDP's broadcast."""
    model._ddp_params_and_buffers_to_ignore = list(names)


# ---------------------------------------------------------------------------------------------------- checked seams
# class path -> {private method we override: parameters we rely on}
OVERRIDDEN: dict[str, dict[str, tuple[str, ...]]] = {
    "trl.RewardTrainer": {
        "_prepare_dataset": ("dataset", "processing_class", "args", "dataset_name"),
        "_set_signature_columns_if_needed": (),
        "_save": ("output_dir", "state_dict"),
    },
    "trl.DPOTrainer": {
        "_prepare_dataset": ("dataset", "processing_class", "args", "dataset_name"),
        "_compute_loss": ("model", "inputs", "return_outputs"),
        "_set_signature_columns_if_needed": (),
        "_save": ("output_dir", "state_dict"),
    },
    **{
        f"trl.{name}": {
            "_generate_and_score_completions": ("inputs",),
            "_generate_single_turn": ("prompt_ids",),
            "_get_per_token_logps_and_entropies": ("model", "input_ids", "attention_mask", "logits_to_keep"),
            "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
            "_compute_loss": ("model", "inputs"),
            "_set_signature_columns_if_needed": (),
            "_log_completion_extra": ("column", "values"),
        }
        for name in ("GRPOTrainer", "RLOOTrainer")
    },
    "transformers.Trainer": {
        "_load_from_checkpoint": ("resume_from_checkpoint", "model"),
        "_load_best_model": (),
        "_issue_warnings_after_load": ("load_result",),
    },
}

# "module:qualified name" of a TRL function -> fingerprint of its source, and where trl-custom mirrors it
MIRRORED: dict[str, tuple[str, str]] = {
    "trl.trainer.reward_trainer:RewardTrainer.compute_loss": (
        "8a8ec01dded134a2",
        "trl_custom/conditioned_rm/metrics.py: log_trl_metrics (listwise batches); listwise loss + centering",
    ),
    "trl.trainer.dpo_trainer:DPOTrainer.compute_ref_log_probs": (
        "2e9d3bad4fc7ad3d",
        "trl_custom/personalized_dpo/personalized_dpo_trainer.py: _log_group_accuracy (the ld_alpha sum)",
    ),
    "trl.trainer.reward_trainer:RewardTrainer.__init__": (
        "3591a21fdf89859c",
        "trl_custom/conditioned_rm/scoring.py: load_reward_model_for_training (the string-model kwargs block)",
    ),
}


def source_of(target: str) -> str:
    """The source of `"module:Qualified.name"`."""
    module_name, qualname = target.split(":")
    obj: Any = __import__(module_name, fromlist=["_"])
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def fingerprint(source: str) -> str:
    """A short hash of `source`, blind to comments, blank lines and indentation (not to any code change)."""
    lines = []
    for line in textwrap.dedent(source).splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip() if not line.strip().startswith("#") else ""
        if line:
            lines.append(line)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


# TRL methods called on a stand-in object (no trainer): the attributes of `self` each one may read
STAND_IN_CALLS: dict[str, tuple[str, ...]] = {
    "trl.trainer.dpo_trainer:DPOTrainer._prepare_dataset": ("_tokenizer",),
}


def tokenize_preferences(dataset, tokenizer):
    """
    Preference pairs tokenized exactly as TRL's `DPOTrainer` tokenizes its datasets (prompt extraction, EOS, chat
    templates, `tools`, the completion split where prompt and completion tokens diverge), without a trainer: TRL's
    `_prepare_dataset` run on a stand-in that holds only the tokenizer it reads (checked by `STAND_IN_CALLS`).
    """
    from types import SimpleNamespace

    from trl import DPOTrainer

    stand_in = SimpleNamespace(_tokenizer=tokenizer)
    args = SimpleNamespace(dataset_num_proc=None, max_length=None, truncation_mode="keep_start")
    return DPOTrainer._prepare_dataset(stand_in, dataset, tokenizer, args, "pairs")
