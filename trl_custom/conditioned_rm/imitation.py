# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Customized preference imitation (DSP): the language-modelling loss on the chosen response, computed through the
reward model's own backbone and its (tied) LM head, in chunks so that memory stays at `chunk x vocab`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..models import unwrap_peft
from .conditioning import uses_last_token_pooling


IMITATION_CHUNK_SIZE = 512  # tokens per chunk of the LM head: bounds the logits' memory at chunk x vocab


def lm_head_weight(model: nn.Module) -> torch.Tensor:
    """
    The LM head of a decoder reward model, for the imitation loss: its tied input embeddings, or an `lm_head`.

    Raises a `ValueError` naming the backbone when there is none (encoders such as BERT/MiniLM, untied decoders whose
    `lm_head` was dropped when loading them as sequence classifiers).
    """
    inner = unwrap_peft(model)
    name = type(inner).__name__
    if not uses_last_token_pooling(inner):
        raise ValueError(
            f"`imitation_coef > 0` needs a causal-LM backbone, but {name} is an encoder without a causal LM head. "
            "Set `imitation_coef=0`, or use a decoder model (Llama, Qwen2, SmolLM2, ...)."
        )
    lm_head = getattr(inner, "lm_head", None)
    if isinstance(lm_head, nn.Linear):
        return lm_head.weight
    if getattr(inner.config.get_text_config(), "tie_word_embeddings", False):
        return inner.get_input_embeddings().weight
    raise ValueError(
        f"`imitation_coef > 0` needs the LM head, but {name} does not tie it to its input embeddings and "
        "AutoModelForSequenceClassification drops `lm_head` at load time. Use a backbone with "
        "`tie_word_embeddings=True`, or set `imitation_coef=0`."
    )


def _ce_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy((hidden @ weight.T).float(), targets, reduction="sum")


def chunked_lm_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """
    Mean next-token cross-entropy of `hidden` (N, H) against `targets` (N,), in chunks of `chunk_size` rows.

    Each chunk's (chunk, vocab) logits are recomputed in the backward pass instead of being stored, so memory grows
    with `chunk_size * vocab`, not with the number of tokens.
    """
    if targets.numel() == 0:
        return hidden.sum() * 0.0
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_size):
        part = slice(start, start + chunk_size)
        if torch.is_grad_enabled():
            total = total + checkpoint(_ce_sum, hidden[part], weight, targets[part], use_reentrant=False)
        else:
            total = total + _ce_sum(hidden[part], weight, targets[part])
    return total / targets.numel()
