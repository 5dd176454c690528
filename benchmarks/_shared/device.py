# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The device a benchmark runs on: a CUDA GPU when one is present, else the CPU; its memory and its versions."""

import importlib.metadata

import torch
from transformers.utils import is_flash_attn_2_available


ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
DTYPE = torch.bfloat16 if ON_GPU else torch.float32  # of models built from config for speed runs


def sync():
    """Wait for the GPU's queued work (a timer around GPU work must), nothing on the CPU."""
    if ON_GPU:
        torch.cuda.synchronize()


def allocated() -> int:
    """Bytes of GPU memory allocated by tensors now (0 on the CPU)."""
    return torch.cuda.memory_allocated() if ON_GPU else 0


def gib(nbytes):
    return None if nbytes is None else nbytes / 2**30


def attention_implementation() -> str:
    return "flash_attention_2" if ON_GPU and is_flash_attn_2_available() else "sdpa"


def environment() -> dict:
    """The device, the versions of the libraries that do the work, the attention and dtype of speed runs."""
    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "device": torch.cuda.get_device_name(0) if ON_GPU else "cpu",
        "cuda": ON_GPU,
        **versions,
        "attention": attention_implementation(),
        "dtype": "bf16" if ON_GPU else "fp32",
        "torch_threads": torch.get_num_threads(),
    }
