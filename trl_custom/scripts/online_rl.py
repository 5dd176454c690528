# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The personalized online-RL recipes' code (`recipes/grpo.py`, `recipes/rloo.py`; `trl-custom grpo`, `trl-custom rloo`,
through `trl_custom.scripts.grpo` / `.rloo`):
TRL's GRPO/RLOO with the user model in generation and in every log-prob pass, rewarded per user.

Prompts come from TRL's data arguments (`dataset_name` or a `datasets:` mixture with a `prompt` column and the
`condition_column`), or are built for synthetic short/long users from a DSP query file (`synthetic_dsp_file`, `demo`
for the built-in queries). Rewards: a conditioned reward model (`reward_model_path`, scored under each row's
condition by `ConditionedRewardFunction`) and/or the synthetic users' length reward (`length_reward`). Every run
writes, beside the model and its user model, the training curves, the reward per user (`user_rewards.png`) and a model
card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, get_peft_config, get_quantization_config

from ..data.demo import make_demo_dsp_queries
from ..data.preferences import load_dsp_queries
from ..data.sources import check_data_file, describe_source, resolve_data_file
from ..personalized_dpo.synthetic_users import build_length_prompt_dataset, length_preference_reward
from ..personalized_rl import PersonalizedGRPOConfig, PersonalizedRLOOConfig
from .outputs import check_plotting, ignore_bias_buffers, write_run_outputs
from .trl_parser import StrictTrlParser


CONFIGS = {"grpo": PersonalizedGRPOConfig, "rloo": PersonalizedRLOOConfig}


@dataclass
class OnlineScriptArguments(ScriptArguments):
    """
    Data and reward arguments of the online recipes: TRL's [`~trl.ScriptArguments`] plus synthetic users and the
    rewards.

    Args:
        synthetic_dsp_file (`str` or `None`): Build prompts for synthetic short/long users from this DSP query file
            (path, `https://` URL, or `"demo"`), see `trl_custom.personalized_dpo.synthetic_users`.
        users_per_group (`int`): Synthetic users per group (`short`, `long`).
        prompts_per_user (`int`): Synthetic prompts per user.
        reward_model_path (`str` or `None`): A conditioned reward model (saved by `CustomRewardTrainer`) scoring each
            completion under its row's condition (`reward_condition_column`).
        reward_condition_column (`str` or `None`): The dataset column the reward model reads its condition from
            (defaults to the policy's `condition_column`).
        length_reward (`bool`): Add the synthetic users' length reward (reads the `group` column).
        test_size (`float`): Fraction of the prompts held out for evaluation (0: none).
    """

    synthetic_dsp_file: str | None = field(
        default=None, metadata={"help": "DSP file (path, https:// URL or 'demo') for synthetic short/long users."}
    )
    users_per_group: int = field(default=2, metadata={"help": "Synthetic users per group."})
    prompts_per_user: int = field(default=16, metadata={"help": "Synthetic prompts per user."})
    reward_model_path: str | None = field(default=None, metadata={"help": "A conditioned reward model's folder."})
    reward_condition_column: str | None = field(
        default=None, metadata={"help": "Column the reward model reads (default: condition_column)."}
    )
    length_reward: bool = field(default=False, metadata={"help": "Add the synthetic users' length reward."})
    test_size: float = field(default=0.0, metadata={"help": "Fraction of prompts held out for evaluation."})

    def __post_init__(self):
        if self.dataset_name and self.synthetic_dsp_file:
            raise ValueError("Give one data source: dataset_name or synthetic_dsp_file, not both.")
        if self.synthetic_dsp_file not in (None, "demo"):
            check_data_file(self.synthetic_dsp_file, "--synthetic_dsp_file")
        if self.reward_model_path is None and not self.length_reward:
            raise ValueError(
                "Give a reward: --reward_model_path FOLDER (a conditioned reward model) and/or --length_reward true "
                "(the synthetic short/long users' length reward)."
            )
        if not 0.0 <= self.test_size < 1.0:
            raise ValueError(f"test_size must be in [0, 1), got {self.test_size}.")


def build_prompts(script_args: OnlineScriptArguments, seed: int, dataset_args=None):
    """Training prompts and held-out prompts (`None` without `test_size`)."""
    if script_args.dataset_name or (dataset_args is not None and dataset_args.datasets):
        from ..data.sources import load_data_source

        dataset = load_data_source(script_args, dataset_args)[script_args.dataset_train_split]
    elif script_args.synthetic_dsp_file:
        items = (
            make_demo_dsp_queries()
            if script_args.synthetic_dsp_file == "demo"
            else load_dsp_queries(resolve_data_file(script_args.synthetic_dsp_file, "--synthetic_dsp_file"))
        )
        dataset = build_length_prompt_dataset(
            items, script_args.users_per_group, script_args.prompts_per_user, seed=seed
        )
    else:
        raise ValueError("Give prompts: --dataset_name NAME_OR_FOLDER, or --synthetic_dsp_file FILE (or 'demo').")
    if "prompt" not in dataset.column_names:
        raise ValueError(f"The prompts have no 'prompt' column (columns: {dataset.column_names}).")
    if not script_args.test_size:
        return dataset, None
    split = dataset.train_test_split(test_size=script_args.test_size, seed=seed)
    return split["train"], split["test"]


def reward_functions(script_args: OnlineScriptArguments, condition_column: str) -> list:
    rewards = []
    if script_args.reward_model_path:
        from ..downstream.reward_functions import ConditionedRewardFunction
        from ..models import resolve_model_path

        rewards.append(
            ConditionedRewardFunction.from_pretrained(
                resolve_model_path(script_args.reward_model_path),
                condition_column=script_args.reward_condition_column or condition_column,
                device="auto",
            )
        )
    if script_args.length_reward:
        rewards.append(length_preference_reward)
    return rewards


def make_parser(prog: str | None = None, trainer: str = "grpo") -> StrictTrlParser:
    """The recipe's parser: its data and reward arguments, the trainer's config, `ModelConfig`, the mixture."""
    return StrictTrlParser((OnlineScriptArguments, CONFIGS[trainer], ModelConfig, DatasetMixtureConfig), prog=prog)


def main(script_args, training_args, model_args, dataset_args=None) -> None:
    """Train, save the policy and its user model, write the curves, the per-user rewards and the model card."""
    from ..models import check_quantization, resolve_model_path
    from ..personalized_rl import PersonalizedGRPOTrainer, PersonalizedRLOOTrainer

    check_quantization(model_args)
    check_plotting()
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    train, held_out = build_prompts(script_args, training_args.seed, dataset_args)
    trainer_class = (
        PersonalizedGRPOTrainer if isinstance(training_args, PersonalizedGRPOConfig) else PersonalizedRLOOTrainer
    )
    trainer = trainer_class(
        model=resolve_model_path(model_args.model_name_or_path),
        reward_funcs=reward_functions(script_args, training_args.condition_column),
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    ignore_bias_buffers(trainer, script_args)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    output_dir = training_args.output_dir
    trainer.save_model(output_dir)
    trainer.save_state()
    trainer.accelerator.print(f"💾 Policy and user model saved to {output_dir}.")
    if trainer.accelerator.is_main_process:
        source = (
            describe_source(script_args, dataset_args)
            if script_args.dataset_name or (dataset_args is not None and dataset_args.datasets)
            else f"synthetic short/long users ({script_args.users_per_group} per group) built from "
            f"`{script_args.synthetic_dsp_file}`"
        )
        write_run_outputs(
            output_dir,
            base_model=model_args.model_name_or_path,
            training_data=f"{source}: {len(train)} prompts, users from `{training_args.condition_column}`.",
            metrics={},
            user_rewards=True,
        )
    trainer.accelerator.wait_for_everyone()
    trainer.end()
