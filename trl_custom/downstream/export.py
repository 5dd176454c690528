# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Export conditioned reward models and personalized policies: one self-contained folder with a model card, and its
upload to the Hugging Face Hub.

A folder written here holds everything needed to reload the model, and nothing that needs `trust_remote_code`:

- the weights (`model.safetensors` + `config.json`, or a LoRA adapter: `adapter_model.safetensors` +
  `adapter_config.json`, whose `modules_to_save` carry the reward head) and the tokenizer;
- a conditioned reward model's condition vocabulary (`conditioning.json`) and, in embedding mode, its condition table
  (`condition_embeddings.safetensors`): reload with [`load_reward_model`], [`RewardScorer.from_pretrained`] or
  [`ConditionedRewardFunction.from_pretrained`];
- a personalized policy's user model (`user_model.json` + `user_model.safetensors`): reload with
  [`load_personalized_model`];
- `README.md`: the model card (method, size of the condition/user table, training data, metrics, how to load).

The files are the ones [`CustomRewardTrainer`] and [`PersonalizedDPOTrainer`] write with `trainer.save_model(dir)`,
so [`write_model_card`] also turns a trainer's output folder into an exportable one.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..attached_modules import split_attached_state
from ..conditioned_rm.conditioning import (
    CONDITION_TABLE_ATTRIBUTE,
    ConditioningSpec,
    get_condition_table,
    save_condition_table,
    uses_last_token_pooling,
)
from ..conditioned_rm.model_settings import save_adapter_settings, saved_settings
from ..conditioned_rm.reward_head import POOLING_CONFIG_ATTRIBUTE
from ..personalized_dpo.user_model import (
    USER_MODEL_ATTRIBUTE,
    USER_MODEL_CONFIG_FILE,
    UserModel,
    UserModelConfig,
    get_user_model,
)


MAX_LISTED_VALUES = 50
MODEL_FILES = ("config.json", "adapter_config.json")


def save_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    save_directory: str | os.PathLike,
    spec: ConditioningSpec | None = None,
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
    it (feed it [`render_reward_text`] and pass `function_to_apply="none"` to get the raw reward). An embedding-mode
    model needs its condition table, so score it with [`RewardScorer`] or [`ConditionedRewardFunction`].

    Args:
        model ([`~transformers.PreTrainedModel`] or `PeftModel`):
            The reward model: `trainer.model` of a [`CustomRewardTrainer`], or from [`load_reward_model`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        save_directory (`str`): Output folder (created if needed).
        spec ([`ConditioningSpec`], *optional*): How the model is conditioned; defaults to the model's own
            (`model.trl_custom_conditioning`, set by the trainer and by [`load_reward_model`]).
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
    spec = spec or getattr(model, "trl_custom_conditioning", None) or ConditioningSpec(mode="none")
    table = get_condition_table(model)
    if spec.mode == "embedding" and table is None:
        raise ValueError(
            "The conditioning spec is in embedding mode but the model has no condition table. Pass the model trained "
            "by CustomRewardTrainer (or loaded with load_reward_model), or attach one with attach_condition_table."
        )
    save_directory = str(save_directory)
    if merge_adapter:
        model = _merged_copy(model)
    if _is_peft(model):
        _check_head_in_adapter(model)
    elif model.config.get_text_config().pad_token_id is None and tokenizer.pad_token_id is not None:
        # pipelines need it to find the last token of a batch row
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id

    def save_conditioning(directory: str) -> None:
        save_adapter_settings(model, directory)  # a LoRA folder's truncation and pooling
        if spec.mode != "none":
            spec.save(directory)
        if spec.mode == "embedding":
            save_condition_table(table.weight, directory)

    card = {"model_name": model_name, "training_data": training_data, "metrics": metrics}
    return _save_folder(model, tokenizer, save_directory, CONDITION_TABLE_ATTRIBUTE, save_conditioning, card)


def save_personalized_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    save_directory: str | os.PathLike,
    user_model: UserModel | None = None,
    *,
    merge_adapter: bool = False,
    model_name: str | None = None,
    training_data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """
    Save a personalized (P-DPO) policy as a self-contained folder with a model card: the causal LM or its LoRA
    adapter, the tokenizer and the [`UserModel`]. Reload it with [`load_personalized_model`].

    Args:
        model ([`~transformers.PreTrainedModel`] or `PeftModel`): The policy: `trainer.model` of a
            [`PersonalizedDPOTrainer`], or from [`load_personalized_model`].
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        save_directory (`str`): Output folder (created if needed).
        user_model ([`UserModel`], *optional*): Defaults to the user model attached to `model`.
        merge_adapter (`bool`, *optional*, defaults to `False`): For a LoRA policy, save a merged copy instead of the
            adapter. [`fit_new_user`] then needs an explicit `ref_model` (there is no adapter to switch off).
        model_name, training_data, metrics: For the model card, as in [`save_reward_model`].

    Returns:
        `str`: `save_directory`.
    """
    user_model = user_model or get_user_model(model)
    if user_model is None:
        raise ValueError(
            "The model has no user model: pass `user_model=`, or the policy trained by PersonalizedDPOTrainer (or "
            "loaded with load_personalized_model)."
        )
    save_directory = str(save_directory)
    if merge_adapter:
        model = _merged_copy(model)
    card = {"model_name": model_name, "training_data": training_data, "metrics": metrics}
    return _save_folder(model, tokenizer, save_directory, USER_MODEL_ATTRIBUTE, user_model.save_pretrained, card)


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
    of model, its condition vocabulary or user table are read from the folder's files.

    Args:
        directory (`str`): The saved folder.
        model_name (`str`, *optional*): Title, and the id used in the card's code (defaults to the folder name).
        base_model (`str`, *optional*): Hub id of the base model (omitted from the metadata when it is a local path).
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
    if base_model is not None and (os.path.isabs(base_model) or os.path.isdir(base_model) or not base_model):
        base_model = None  # a local path means nothing on the Hub
    weights = _weights_description(directory)
    user_model_path = os.path.join(directory, USER_MODEL_CONFIG_FILE)
    if os.path.isfile(user_model_path):
        with open(user_model_path, encoding="utf-8") as f:
            body, data = _policy_card(model_name, UserModelConfig(**json.load(f)))
    else:
        pooling = saved_settings(directory).get(POOLING_CONFIG_ATTRIBUTE) or "model"
        body, data = _reward_card(model_name, ConditioningSpec.load(directory), pooling)
    data.base_model = base_model
    sections = [
        body,
        weights,
        _training_data_section(training_data),
        _metrics_section(metrics),
        _figures_section(figures),
        _command_section(command),
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n")
    path = os.path.join(directory, "README.md")
    card.save(path)
    return path


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


def _base_model_id(model) -> str | None:
    if _is_peft(model):
        return model.peft_config[model.active_adapter].base_model_name_or_path
    return getattr(model.config, "_name_or_path", None)


def _save_folder(
    model, tokenizer, directory: str, attribute: str, save_attached: Callable[[str], None], card: dict[str, Any]
) -> str:
    """The tail of both exports: the weights without the module attached as `attribute`, the tokenizer, that
    module's own files (`save_attached(directory)`) and the model card."""
    _save_weights(model, directory, attribute)
    tokenizer.save_pretrained(directory)
    save_attached(directory)
    write_model_card(directory, base_model=_base_model_id(model), **card)
    return directory


def _save_weights(model, directory: str, attribute: str) -> None:
    """The model (or, for a PEFT model, its adapter) without the attached `attribute` module, saved separately."""
    os.makedirs(directory, exist_ok=True)
    if _is_peft(model):
        model.save_pretrained(directory)  # LoRA weights + modules_to_save; attached modules are not part of them
        return
    state_dict, _ = split_attached_state(model.state_dict(), attribute)
    model.save_pretrained(directory, state_dict=state_dict)


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
    method = {
        "none": "an unconditioned reward model (TRL's `RewardTrainer` objective).",
        "text": (
            "a reward model conditioned on a domain/user rendered into its input as text "
            f"(template `{spec.template!r}`: prefix of the prompt, or system message of a conversation)."
        ),
        "embedding": (
            f"a reward model conditioned on a domain/user through {spec.num_tokens} learned soft tokens per "
            "condition, inserted after the first token (`condition_embeddings.safetensors`, rows as in "
            "`conditioning.json`; row 0 is the generic entry)."
        ),
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
            ("unknown values", "error (strict)" if spec.strict else "scored as generic"),
        ]
        if spec.mode == "embedding":
            rows.append(("soft tokens per condition", spec.num_tokens))
        if spec.in_text:
            rows.append(("condition also in the text", f"`{spec.template!r}`"))
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
            f"The reward head reads the {pooling} of the encoder's last hidden states (`trl_custom_pooling` in "
            "config.json), which `RewardScorer` and `ConditionedRewardFunction` apply: a plain `transformers` "
            "pipeline would read the [CLS] pooler instead, and score wrongly.",
        ]
    elif spec.mode != "embedding":
        lines += [
            "",
            "It is a plain `AutoModelForSequenceClassification` (when saved as a full model): "
            '`pipeline("text-classification", model=..., function_to_apply="none")` returns the raw reward of a '
            "text built with `trl_custom.render_reward_text` (condition template + prompt + response + EOS).",
        ]
    return "\n".join(lines), data


def _policy_card(model_name: str, config: UserModelConfig) -> tuple[str, ModelCardData]:
    data = ModelCardData(
        library_name="transformers", pipeline_tag="text-generation", tags=["trl", "trl-custom", "p-dpo", "dpo"]
    )
    rows = [
        ("users", f"{len(config.users)} (+ the generic user, index 0)"),
        ("user model", f"`{config.user_model_type}`"),
        ("soft tokens per user", config.num_tokens),
        ("individual vector size", config.user_dim),
        ("user features", config.num_features),
        ("unknown users", "error (strict)" if config.strict else "generic user"),
    ]
    if config.user_model_type == "cluster":
        rows.insert(2, ("clusters", config.num_clusters))
    example = config.users[0] if config.users else None
    lines = [
        f"# {model_name}",
        "",
        "A personalized policy trained with P-DPO (Personalized DPO, from *Personalized Language Modeling from "
        "Personalized Human Feedback*, Li, Lipton, Leqi) with trl-custom, on top of "
        "[TRL](https://github.com/huggingface/trl): a user model maps each user id to soft tokens (a shared generic "
        "part + an individual part) prepended to the policy's input (`user_model.json` + `user_model.safetensors`).",
        "",
        "## Users",
        "",
        _table(rows),
        "",
        f"Known users: {_listed(config.users)}.",
        "",
        "## Usage",
        "",
        "```python",
        "from trl_custom import generate_for_user, load_personalized_model",
        "",
        f'model, tokenizer, user_model = load_personalized_model("{model_name}")  # a local folder',
        f'generate_for_user(model, tokenizer, ["Tell me about bees."], users={example!r}, max_new_tokens=40)',
        "```",
    ]
    return "\n".join(lines), data


def _weights_description(directory: str) -> str:
    adapter_config = os.path.join(directory, "adapter_config.json")
    if not os.path.isfile(adapter_config):
        return "## Weights\n\nA full model (`config.json` + `model.safetensors`)."
    with open(adapter_config, encoding="utf-8") as f:
        config = json.load(f)
    saved = config.get("modules_to_save") or []
    return (
        f"## Weights\n\nA {config.get('peft_type', 'PEFT')} adapter on `{config.get('base_model_name_or_path')}`, "
        "which must be reachable to load it"
        + (f" (whole modules saved with the adapter: {_listed(saved)})." if saved else ".")
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
