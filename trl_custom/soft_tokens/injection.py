# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The one place where soft tokens enter a model's input, for reward models and policies, padded and packed.

[`plan_insertion`] puts `K` soft tokens into each row of a padded batch, in place: before the row's first real token
(`"prepend"`, policies) or right after it (`"after_first"`, reward models: BOS/CLS stays first). Every column from
that point on moves `K` to the right, so right- and left-padded rows keep their padding where it was, and
`position_ids` are `cumsum(mask) - 1` (padding: 1), exactly what `generate` computes for `inputs_embeds` under left
padding, so a policy's log-probs equal those of its generation.

[`soft_token_forward`] applies it to the calls TRL (or a scorer) makes to a model, through forward hooks, the way
PEFT's prompt tuning injects virtual tokens: before the forward, `input_ids` become `inputs_embeds` with the soft
tokens, the attention mask, `position_ids` and `labels` (`-100` on the soft positions) follow, and with `pack=True` the
sequences are laid end to end ([`~trl_custom.packing.plan_packing`]); after it, a reward model's reward is read at
each sequence's last real token, and per-token outputs are put back where the caller expects them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..packing import PackedLayout, pack, plan_packing, shift_labels, unpack


PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


@dataclass
class Insertion:
    """
    Where the tokens of a padded `(batch, length)` batch go once `K` soft tokens are inserted in each row.

    Attributes:
        new_column (`torch.Tensor`): `(batch, length)`, the column of each original column in the `(batch, length +
            K)` layout.
        source (`torch.Tensor`): `(batch, length + K)`, for each new column the index into `cat([tokens, soft], 1)`.
        attention_mask, position_ids (`torch.Tensor`): `(batch, length + K)`.
        last (`torch.Tensor`): `(batch,)` new column of each row's last token (real or soft).
    """

    new_column: torch.Tensor
    source: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    last: torch.Tensor

    def apply(self, tensor: torch.Tensor, soft: torch.Tensor | float | int) -> torch.Tensor:
        """`(batch, length, ...)` -> `(batch, length + K, ...)` with `soft` (a `(batch, K, ...)` tensor or a fill
        value) at the soft positions. Differentiable in both."""
        batch, length = tensor.shape[:2]
        k = self.source.shape[1] - length
        if not torch.is_tensor(soft):
            soft = tensor.new_full((batch, k, *tensor.shape[2:]), soft)
        joined = torch.cat([tensor, soft.to(tensor.dtype)], dim=1)
        index = self.source.view(batch, -1, *([1] * (tensor.dim() - 2))).expand(-1, -1, *tensor.shape[2:])
        return joined.gather(1, index)

    def restore(self, tensor: torch.Tensor) -> torch.Tensor:
        """`(batch, length + K, ...)` -> the original `(batch, length, ...)` layout (the soft positions dropped)."""
        index = self.new_column.view(*self.new_column.shape, *([1] * (tensor.dim() - 2)))
        return tensor.gather(1, index.expand(-1, -1, *tensor.shape[2:]))


def plan_insertion(attention_mask: torch.Tensor, num_tokens: int, after_first: bool) -> Insertion:
    """Layout of a padded batch (each row's real tokens contiguous, padding on either side) with `num_tokens` soft
    tokens inserted in place, before (`after_first=False`) or after (`True`) each row's first real token."""
    mask = attention_mask.bool()
    batch, length = mask.shape
    k = num_tokens
    device = mask.device
    first = mask.long().argmax(dim=1)
    insert = (first + int(after_first)).clamp(max=length).unsqueeze(1)
    columns = torch.arange(length, device=device).unsqueeze(0)
    new_column = columns + k * (columns >= insert)
    new = torch.arange(length + k, device=device).unsqueeze(0)
    is_soft = (new >= insert) & (new < insert + k)
    source = torch.where(is_soft, length + new - insert, new - k * (new >= insert + k))
    new_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, k)], dim=1).gather(1, source)
    position_ids = (new_mask.long().cumsum(dim=1) - 1).masked_fill(new_mask == 0, 1)
    last = length + k - 1 - new_mask.bool().flip(1).long().argmax(dim=1)  # a soft token in a one-token row
    return Insertion(new_column, source, new_mask, position_ids, last)


def embed_with_soft_tokens(
    model: nn.Module,
    soft_tokens: torch.Tensor,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor,
    after_first: bool = False,
) -> dict[str, torch.Tensor]:
    """`inputs_embeds`, `attention_mask` and `position_ids` of a batch with its soft tokens inserted (for `generate`
    and for direct calls); see [`plan_insertion`]."""
    plan = plan_insertion(attention_mask, soft_tokens.shape[1], after_first)
    embeds = model.get_input_embeddings()(input_ids)
    return {
        "inputs_embeds": plan.apply(embeds, soft_tokens.to(embeds.dtype)),
        "attention_mask": plan.attention_mask,
        "position_ids": plan.position_ids,
    }


_PADDING_WARNING = "will not detect padding tokens in `inputs_embeds`"


class _NoPaddingWarning(logging.Filter):
    """transformers warns that a sequence classifier fed `inputs_embeds` pools the last position; the hooks read
    each sequence's last real token instead, so the warning does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _PADDING_WARNING not in record.getMessage()


logging.getLogger("transformers.modeling_layers").addFilter(_NoPaddingWarning())


class SoftTokenForward:
    """
    Forward pre-/post-hooks for the calls of a model inside [`soft_token_forward`] (see the module docstring).

    Args:
        soft_tokens (`torch.Tensor` or `None`): `(rows, K, hidden)`, one row per sequence of each call, or `None`
            (no soft tokens: packing only).
        after_first (`bool`): Insert after each row's first token (reward models) instead of before it (policies).
        pack (`bool`): Pack the sequences (reward models: every call; policies: TRL's fused-LM-head calls).
        single_row (`bool`): Pack into one row (FlashAttention's variable-length kernel).
        read_reward (`bool`): A decoder reward model: its reward is read at each sequence's last real token (the
            model itself would read the last position, which `inputs_embeds` and packing do not make the last token).
        restore_hidden_states (`bool`): Return `hidden_states` in the caller's padded layout (soft positions dropped,
            packed rows unpacked).
        sequential (`bool`): The calls are chunks of one batch (TRL's chunked log-prob passes): each call takes the
            next rows of `soft_tokens`.
    """

    def __init__(
        self,
        soft_tokens: torch.Tensor | None,
        after_first: bool = False,
        pack: bool = False,
        single_row: bool = False,
        read_reward: bool = False,
        restore_hidden_states: bool = False,
        sequential: bool = False,
    ):
        self.soft_tokens = soft_tokens
        self.sequential = sequential
        self._next_row = 0
        self.after_first = after_first
        self.pack = pack
        self.single_row = single_row
        self.read_reward = read_reward
        self.restore_hidden_states = restore_hidden_states
        self.calls = 0
        self.head_outputs: list[torch.Tensor] = []
        self.log_probs = None  # per-token log-probs of the last fused call, as the caller sees them (detached)
        self._state = None

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            raise TypeError("Soft-token forward hooks expect keyword arguments (input_ids=..., attention_mask=...).")
        self.calls += 1
        self.head_outputs.clear()
        input_ids, attention_mask = kwargs.pop("input_ids"), kwargs.pop("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        labels = kwargs.pop("labels", None)
        insertion = packed = None
        if self.soft_tokens is not None:
            soft = self._rows_for(input_ids.shape[0])
            insertion = plan_insertion(attention_mask, soft.shape[1], self.after_first)
            embeds = module.get_input_embeddings()(input_ids)
            model_inputs = {"inputs_embeds": insertion.apply(embeds, soft.to(embeds.dtype))}
            attention_mask, position_ids = insertion.attention_mask, insertion.position_ids
            if labels is not None:
                labels = insertion.apply(labels, -100)
        else:
            model_inputs, position_ids = {"input_ids": input_ids}, None
        fused = kwargs.get("fused_lm_head") and labels is not None
        if self.pack and (self.read_reward or fused):
            packed = plan_packing(attention_mask, single_row=self.single_row)
            kwargs.update({name: pack(value, packed) for name, value in model_inputs.items()})
            kwargs.update(attention_mask=None, position_ids=packed.position_ids)
            if labels is not None:
                kwargs["shift_labels"] = pack(shift_labels(labels, attention_mask), packed, fill=-100)
        else:
            kwargs.update(model_inputs, attention_mask=attention_mask)
            if position_ids is not None:
                kwargs["position_ids"] = position_ids
            if labels is not None:
                kwargs["labels"] = labels
        self._state = (insertion, packed, attention_mask, fused)
        return args, kwargs

    def _rows_for(self, rows: int) -> torch.Tensor:
        """The soft tokens of this call's `rows` sequences: all of them, or (`sequential`) the next `rows`."""
        if not self.sequential:
            if self.soft_tokens.shape[0] != rows:
                raise ValueError(f"{self.soft_tokens.shape[0]} rows of soft tokens for a call of {rows} sequences.")
            return self.soft_tokens
        start, self._next_row = self._next_row, self._next_row + rows
        if self._next_row > self.soft_tokens.shape[0]:
            raise ValueError(f"The chunked calls read {self._next_row} rows, more than {self.soft_tokens.shape[0]}.")
        return self.soft_tokens[start : self._next_row]

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output):
        insertion, packed, attention_mask, fused = self._state
        if self.read_reward and (insertion is not None or packed is not None):
            scores = self.head_outputs[-1]  # the reward head's per-token output, (rows, width, 1)
            if packed is not None:
                last = packed.last
            else:
                last = (torch.arange(scores.shape[0], device=scores.device), insertion.last)
            output.logits = scores[last]
        if packed is not None and fused:
            for name in PER_TOKEN_FIELDS:
                value = getattr(output, name, None)
                if value is not None:
                    # packed position t predicts the next token of its sequence; the padded fused output has one
                    # position fewer (labels[:, 1:]), which is the unpacked tensor without its last column
                    setattr(output, name, unpack(value, packed, like=attention_mask)[:, :-1])
        elif insertion is not None and not fused and getattr(output, "logits", None) is not None:
            if not self.read_reward and output.logits.dim() == 3 and output.logits.shape[1] == attention_mask.shape[1]:
                output.logits = insertion.restore(output.logits)  # a policy's plain forward
        if self.restore_hidden_states and getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(
                self._restore(h, insertion, packed, attention_mask) for h in output.hidden_states
            )
        if getattr(output, "log_probs", None) is not None:
            self.log_probs = output.log_probs.detach()
        return output

    @staticmethod
    def _restore(tensor, insertion: Insertion | None, packed: PackedLayout | None, attention_mask):
        if packed is not None:
            tensor = unpack(tensor, packed, like=attention_mask)
        return insertion.restore(tensor) if insertion is not None else tensor

    def capture_head(self, _module, _args, output) -> None:
        self.head_outputs.append(output)


@contextlib.contextmanager
def soft_token_forward(
    module: nn.Module,
    soft_tokens: torch.Tensor | None,
    *,
    after_first: bool = False,
    pack: bool = False,
    single_row: bool = False,
    reward_head: nn.Module | None = None,
    restore_hidden_states: bool = False,
    sequential: bool = False,
):
    """
    Hook `module` (the model as its caller calls it: the unwrapped policy or reward model, PEFT wrapper included) with
    a [`SoftTokenForward`] for the calls inside the block. `reward_head` (a decoder reward model's `score`): read the
    reward at each sequence's last real token.
    """
    hooks = SoftTokenForward(
        soft_tokens,
        after_first=after_first,
        pack=pack,
        single_row=single_row,
        read_reward=reward_head is not None,
        restore_hidden_states=restore_hidden_states,
        sequential=sequential,
    )
    handles = [
        module.register_forward_pre_hook(hooks.before, with_kwargs=True),
        module.register_forward_hook(hooks.after, with_kwargs=True),
    ]
    if reward_head is not None:
        handles.append(reward_head.register_forward_hook(hooks.capture_head))
    try:
        yield hooks
    finally:
        for handle in handles:
            handle.remove()
