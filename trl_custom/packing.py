# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Padding-free (packed) batches: the sequences of a padded batch laid end to end in a few rows.

A packed row holds several sequences back to back; `position_ids` restart at 0 for each of them and the attention
mask is left out (`None`). transformers then builds a block-diagonal causal mask from the `position_ids`
(`masking_utils.find_packed_sequence_indices`, for `sdpa`, `eager` and `flex_attention`) or calls FlashAttention's
variable-length kernel (`flash_attention_2/3`, which needs a single row), so no token attends across sequences.

Sequences are placed first-fit-decreasing into rows of the batch's longest sequence (one row for FlashAttention).
A dense masked attention (SDPA, eager) costs `rows x row_length^2`, so rows no longer than the longest sequence never
cost more attention than the padded batch, while the linear layers only see real tokens (and the short tail of each
row). The layout is computed from the padded batch's `attention_mask`, so the padded collators, the condition tokens
and the user tokens are built exactly as on the padded path and then packed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from . import trl_seams
from .models import unwrap_peft


# transformers builds the packed mask from `position_ids` for these (masking_utils / modeling_flash_attention_utils)
MASKED_PACKING_ATTENTION = ("sdpa", "eager", "flex_attention")
VARLEN_PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3")


@dataclass
class PackedLayout:
    """
    Where each real token of a padded `(sequences, length)` batch goes in the packed `(rows, row_length)` batch.

    Attributes:
        source (`tuple[torch.Tensor, torch.Tensor]`): Row and column of each real token in the padded batch.
        target (`tuple[torch.Tensor, torch.Tensor]`): Row and column of the same tokens in the packed batch.
        position_ids (`torch.Tensor`): `(rows, row_length)`; restart at 0 for each sequence and for each row's
            padding tail (a sequence of its own that no real token attends to).
        last (`tuple[torch.Tensor, torch.Tensor]`): Packed row and column of each sequence's last token.
        shape (`tuple[int, int]`): `(rows, row_length)`.
    """

    source: tuple[torch.Tensor, torch.Tensor]
    target: tuple[torch.Tensor, torch.Tensor]
    position_ids: torch.Tensor
    last: tuple[torch.Tensor, torch.Tensor]
    shape: tuple[int, int]


def attention_implementation(model: nn.Module) -> str:
    """The attention implementation of a (possibly PEFT-wrapped) model, e.g. `"sdpa"`."""
    inner = unwrap_peft(model)
    config = inner.config.get_text_config()
    return trl_seams.attention_implementation(config)


def check_packable(model: nn.Module, decoder: bool = True) -> None:
    """
    Fail early, naming the fix, when `model` cannot run packed sequences: encoders (`decoder=False`: absolute
    positions and a bidirectional mask that transformers does not split by `position_ids`) and attention
    implementations that do not build a packed mask.
    """
    inner = unwrap_peft(model)
    name = type(inner).__name__
    if not decoder:
        raise ValueError(
            f"padding_free=True needs a decoder model (causal attention, last-token reward head), but {name} is an "
            "encoder: transformers does not split its bidirectional attention by packed position_ids. Set "
            "padding_free=False, or use a decoder reward model (Llama, Qwen2, SmolLM2, ...)."
        )
    implementation = attention_implementation(model)
    if implementation not in MASKED_PACKING_ATTENTION + VARLEN_PACKING_ATTENTION:
        raise ValueError(
            f"padding_free=True: {name} uses attn_implementation={implementation!r}, which cannot keep packed "
            f"sequences apart. Load the model with attn_implementation='sdpa' (or one of "
            f"{MASKED_PACKING_ATTENTION + VARLEN_PACKING_ATTENTION}), or set padding_free=False."
        )


def plan_packing(attention_mask: torch.Tensor, single_row: bool = False) -> PackedLayout:
    """
    Packed layout of the real tokens of `attention_mask` (`(sequences, length)`, each row's real tokens contiguous,
    padding on either side), first-fit-decreasing into rows of the longest sequence (one row if `single_row`).
    """
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1).tolist()
    capacity = sum(lengths) if single_row else max(lengths)
    row_of, offset_of, used = [0] * len(lengths), [0] * len(lengths), []
    for sequence in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, filled in enumerate(used) if filled + lengths[sequence] <= capacity), len(used))
        if row == len(used):
            used.append(0)
        row_of[sequence], offset_of[sequence] = row, used[row]
        used[row] += lengths[sequence]
    device = attention_mask.device
    row_of_t = torch.tensor(row_of, device=device)
    offset_of_t = torch.tensor(offset_of, device=device)
    src_rows, src_cols = mask.nonzero(as_tuple=True)
    rank = (mask.long().cumsum(dim=1) - 1)[src_rows, src_cols]  # position of the token within its sequence
    target = (row_of_t[src_rows], offset_of_t[src_rows] + rank)
    shape = (len(used), max(used))
    used_t = torch.tensor(used, device=device)
    position_ids = torch.arange(shape[1], device=device).unsqueeze(0) - used_t.unsqueeze(1)  # padding tails: 0, 1..
    position_ids[target] = rank
    lengths_t = torch.tensor(lengths, device=device)
    last = (row_of_t, offset_of_t + lengths_t - 1)
    return PackedLayout(source=(src_rows, src_cols), target=target, position_ids=position_ids, last=last, shape=shape)


def pack(tensor: torch.Tensor, layout: PackedLayout, fill: float | int = 0) -> torch.Tensor:
    """`(sequences, length, ...)` padded tensor -> `(rows, row_length, ...)` packed tensor (differentiable)."""
    packed = tensor.new_full((*layout.shape, *tensor.shape[2:]), fill)
    return packed.index_put(layout.target, tensor[layout.source])


def unpack(tensor: torch.Tensor, layout: PackedLayout, like: torch.Tensor, fill: float | int = 0) -> torch.Tensor:
    """`(rows, row_length, ...)` packed tensor -> the padded layout of `like` (`(sequences, length)`)."""
    padded = tensor.new_full((*like.shape[:2], *tensor.shape[2:]), fill)
    return padded.index_put(layout.source, tensor[layout.target])


def shift_labels(labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token labels within each padded sequence (`-100` at its end and on padding), ready to be packed."""
    labels = labels.masked_fill(attention_mask == 0, -100)
    return torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), -100)], dim=1)
