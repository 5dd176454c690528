# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""How the user tokens (and padding-free packing) enter TRL's own DPO forward passes.

`PersonalizedDPOTrainer` runs TRL's `DPOTrainer._compute_loss` unchanged. TRL calls the policy as
`model(input_ids=..., attention_mask=..., labels=..., fused_lm_head=True)` and reads per-token fields of the output
(`log_probs`, `entropy`, `mean_logits`, `is_top1`, `log_sum_sq_probs`), keeping the last `seq_len` positions: it
already drops virtual tokens that prompt-learning PEFT prepends. [`PolicyForward`] is a pair of forward hooks, active
for one such call, that do what PEFT's prompt tuning does with its virtual tokens:

- before the forward: embed `input_ids`, put each pair's user soft tokens in front (`inputs_embeds`), extend the
  attention mask, and give the soft positions the label `-100`;
- with packing: lay the sequences end to end ([`~trl_custom.packing.plan_packing`]), pass `position_ids` and
  pre-shifted labels instead of the attention mask, and after the forward put every per-token field back in the
  padded layout, so TRL sees the tensors a padded forward returns.

Every loss type, list of loss types, f-divergence, `label_smoothing`, `ld_alpha`, `use_weighting` and the MoE
auxiliary loss of TRL therefore apply to the personalized policy as they do to a plain one.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from ..packing import pack, plan_packing, shift_labels, unpack
from .user_model import prepend_user_tokens


PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


class PolicyForward:
    """
    Forward pre-/post-hooks for one TRL forward call of `module` (see the module docstring).

    Args:
        soft_tokens (`torch.Tensor` or `None`): `(sequences, K, hidden)` user tokens, one row per sequence of the batch
            (`[chosen; rejected]`), or `None` for none.
        pack (`bool`): Pack the fused-LM-head forward (`padding_free`).
        single_row (`bool`): Pack into one row (FlashAttention's variable-length kernel).
    """

    def __init__(self, soft_tokens: torch.Tensor | None, pack: bool = False, single_row: bool = False):
        self.soft_tokens = soft_tokens
        self.pack = pack
        self.single_row = single_row
        self.calls = 0
        self._layout = None
        self.log_probs = None  # per-token log-probs of the last fused call, in the padded layout (detached)

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            raise TypeError("PersonalizedDPOTrainer's policy forward expects keyword arguments, as TRL passes them.")
        self.calls += 1
        self._layout = None
        input_ids, attention_mask = kwargs.pop("input_ids"), kwargs.pop("attention_mask")
        labels = kwargs.pop("labels", None)
        if self.soft_tokens is not None:
            num_soft = self.soft_tokens.shape[1]
            inputs = prepend_user_tokens(module, self.soft_tokens, input_ids, attention_mask)
            attention_mask = inputs["attention_mask"]
            model_inputs = {"inputs_embeds": inputs["inputs_embeds"]}
            if labels is not None:
                labels = torch.cat([labels.new_full((labels.shape[0], num_soft), -100), labels], dim=1)
        else:
            model_inputs = {"input_ids": input_ids}
        if self.pack and kwargs.get("fused_lm_head") and labels is not None:
            layout = plan_packing(attention_mask, single_row=self.single_row)
            self._layout = (layout, attention_mask)
            kwargs.update(
                {name: pack(value, layout) for name, value in model_inputs.items()},
                attention_mask=None,
                position_ids=layout.position_ids,
                shift_labels=pack(shift_labels(labels, attention_mask), layout, fill=-100),
            )
        else:
            kwargs.update(model_inputs, attention_mask=attention_mask)
            if labels is not None:
                kwargs["labels"] = labels
        return args, kwargs

    def after(self, module: nn.Module, args: tuple, kwargs: dict, output):
        if self._layout is not None:
            layout, attention_mask = self._layout
            for name in PER_TOKEN_FIELDS:
                value = getattr(output, name, None)
                if value is not None:
                    # packed position t predicts the next token of its sequence; the padded fused output has one
                    # position fewer (labels[:, 1:]), which is the unpacked tensor without its last column
                    setattr(output, name, unpack(value, layout, like=attention_mask)[:, :-1])
        elif self.soft_tokens is not None and getattr(output, "logits", None) is not None:
            output.logits = output.logits[:, self.soft_tokens.shape[1] :]  # the plain (non-fused) forward
        if getattr(output, "log_probs", None) is not None:
            self.log_probs = output.log_probs.detach()
        return output


@contextlib.contextmanager
def policy_forward(module: nn.Module, soft_tokens: torch.Tensor | None, pack: bool = False, single_row: bool = False):
    """Hook `module` (the unwrapped policy or reference) with a [`PolicyForward`] for the calls inside the block."""
    hooks = PolicyForward(soft_tokens, pack=pack, single_row=single_row)
    handles = [
        module.register_forward_pre_hook(hooks.before, with_kwargs=True),
        module.register_forward_hook(hooks.after, with_kwargs=True),
    ]
    try:
        yield hooks
    finally:
        for handle in handles:
            handle.remove()
