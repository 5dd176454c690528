# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The P-DPO recipe (`recipes/dpo.py`, `trl-custom dpo`): its data arguments, data, training and evaluation.

Data comes from TRL's data arguments (`dataset_name`: a Hub id, a local folder of json/jsonl/parquet/csv files or a
`save_to_disk` folder; or a `datasets:` mixture) with a `condition_column` (the user), from a JSON(-lines) file of
`{prompt, chosen, rejected, user_id}` rows, or is built as synthetic short/long/mixed users from a DSP query file.
Every run evaluates the held-out pairs per user (or `group_column`) before and after training and writes, beside
the model, `eval_results.json`, training curves, per-user accuracy bars and a model card (`README.md`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from datasets import Dataset, load_dataset
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, get_peft_config, get_quantization_config

from ..data.checks import check_rows
from ..data.demo import make_demo_dsp_queries
from ..data.preferences import load_dsp_queries
from ..data.sources import check_data_file, describe_source, resolve_data_file
from ..personalized_dpo.personalized_dpo_config import PersonalizedDPOConfig
from ..personalized_dpo.synthetic_users import build_length_preference_dataset
from .outputs import check_plotting, ignore_bias_buffers, write_run_outputs
from .trl_parser import StrictTrlParser


ACCURACY_PREFIX = "eval_rewards/accuracies"


@dataclass
class DPOScriptArguments(ScriptArguments):
    """
    Data arguments of the P-DPO recipe: TRL's [`~trl.ScriptArguments`] (`dataset_name`, `dataset_config`,
    `dataset_train_split`, `dataset_test_split`, `ignore_bias_buffers`; a `datasets:` mixture goes to
    [`~trl.DatasetMixtureConfig`]) plus a pairs file or synthetic users.

    Args:
        dataset_file (`str` or `None`): JSON/JSON-lines file (path or `https://` URL) of
            `{prompt, chosen, rejected, user_id[, group]}` rows.
        synthetic_dsp_file (`str` or `None`): Instead, build the synthetic short-vs-long users from this DSP query
            file (path or URL; `"demo"`: the built-in demo queries), see `trl_custom.personalized_dpo.synthetic_users`.
        users_per_group (`int`): Synthetic users per group (short, long, mixed).
        pairs_per_user (`int`): Synthetic pairs per user.
        max_chars (`int` or `None`): Cut synthetic responses to this many characters (CPU-sized runs).
        test_size (`float`): Fraction of rows held out for evaluation (of a dataset source: when it has no
            `dataset_test_split`).
    """

    dataset_file: str | None = field(
        default=None, metadata={"help": "JSON(-lines) preference file with user_id (path or https:// URL)."}
    )
    synthetic_dsp_file: str | None = field(
        default=None, metadata={"help": "DSP file (path, https:// URL or 'demo') for synthetic users."}
    )
    users_per_group: int = field(default=2, metadata={"help": "Synthetic users per group."})
    pairs_per_user: int = field(default=32, metadata={"help": "Synthetic pairs per user."})
    max_chars: int | None = field(default=300, metadata={"help": "Cut synthetic responses to this many characters."})
    test_size: float = field(default=0.2, metadata={"help": "Fraction of rows held out for evaluation."})

    def __post_init__(self):
        given = [name for name in ("dataset_name", "dataset_file", "synthetic_dsp_file") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"Give one data source, not {' and '.join(given)}.")
        for flag, path in (("--dataset_file", self.dataset_file), ("--synthetic_dsp_file", self.synthetic_dsp_file)):
            if path not in (None, "demo"):
                check_data_file(path, flag)


def build_dpo_data(
    args: DPOScriptArguments,
    seed: int = 0,
    dataset_args: DatasetMixtureConfig | None = None,
    feature_columns: list[str] | None = None,
) -> tuple[Dataset, Dataset]:
    """
    Train and held-out split of the P-DPO data. A dataset source or `dataset_file` is checked whole before the split
    ([`~trl_custom.data.checks.check_rows`]: text types, empty responses, the user `feature_columns`), so that an
    error names the row of the user's file and a bad held-out row fails before training.
    """
    if args.dataset_name or (dataset_args is not None and dataset_args.datasets):
        if args.dataset_file or args.synthetic_dsp_file:
            raise ValueError("A `datasets:` mixture and --dataset_file/--synthetic_dsp_file are two data sources.")
        from .reward import load_dataset_splits

        checks = {"listwise": False, "margins": False, "feature_columns": feature_columns}
        train, held_out, _ = load_dataset_splits(args, dataset_args, seed, **checks)
        return train, held_out
    if not (args.dataset_file or args.synthetic_dsp_file):
        raise ValueError(
            "Give one data source: --dataset_name NAME_OR_FOLDER (or a `datasets:` mixture in the YAML), "
            "--dataset_file FILE or --synthetic_dsp_file FILE (or 'demo')."
        )
    if args.dataset_file:
        path = resolve_data_file(args.dataset_file, "--dataset_file")
        dataset = load_dataset("json", data_files=path, split="train")
        check_rows(dataset, args.dataset_file, margins=False, feature_columns=feature_columns or [])
    else:
        if args.synthetic_dsp_file == "demo":
            items = make_demo_dsp_queries()
        else:
            items = load_dsp_queries(resolve_data_file(args.synthetic_dsp_file, "--synthetic_dsp_file"))
        dataset = build_length_preference_dataset(
            items, args.users_per_group, args.pairs_per_user, max_chars=args.max_chars, seed=seed
        )
    split = dataset.train_test_split(test_size=args.test_size, seed=seed)
    return split["train"], split["test"]


def describe_dpo_data(args: DPOScriptArguments, dataset_args, train: Dataset, held_out: Dataset, user: str) -> str:
    """Where the P-DPO data came from, for the model card."""
    if args.dataset_name or (dataset_args is not None and dataset_args.datasets):
        source = describe_source(args, dataset_args)
    elif args.dataset_file:
        source = f"`{args.dataset_file}`"
    else:
        dsp = "the built-in demo queries" if args.synthetic_dsp_file == "demo" else f"`{args.synthetic_dsp_file}`"
        source = f"synthetic short/long/mixed users ({args.users_per_group} per group) built from {dsp}"
    return f"{source}: {len(train)} pairs trained on, {len(held_out)} held out, users from `{user}`."


def make_parser(prog: str | None = None) -> StrictTrlParser:
    """The recipe's parser: its data arguments, [`PersonalizedDPOConfig`], `ModelConfig`, `DatasetMixtureConfig`."""
    return StrictTrlParser((DPOScriptArguments, PersonalizedDPOConfig, ModelConfig, DatasetMixtureConfig), prog=prog)


def main(
    script_args: DPOScriptArguments,
    training_args: PersonalizedDPOConfig,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig | None = None,
) -> None:
    """Train, evaluate before/after per user, save the model with its results (see the module docstring)."""
    from ..models import check_quantization, resolve_model_path
    from ..personalized_dpo.personalized_dpo_trainer import PersonalizedDPOTrainer

    check_quantization(model_args)
    check_plotting()
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    # The "before" numbers are measured inside train(), once the model is wrapped for distributed training: calling
    # trainer.evaluate() before trainer.train() leaves it unwrapped, and under DDP the gradients are never averaged.
    training_args.eval_on_start = True
    train, held_out = build_dpo_data(
        script_args, training_args.seed, dataset_args, feature_columns=training_args.condition_feature_columns
    )
    trainer = PersonalizedDPOTrainer(
        model=resolve_model_path(model_args.model_name_or_path),
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    ignore_bias_buffers(trainer, script_args)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    before = next((log for log in trainer.state.log_history if "eval_loss" in log), {})
    after = trainer.evaluate()
    output_dir = training_args.output_dir
    trainer.save_model(output_dir)
    trainer.save_state()  # trainer_state.json: the logged losses and metrics
    trainer.accelerator.print(f"💾 Model and user model saved to {output_dir}.")
    trainer.accelerator.print(f"{'held-out implicit-reward accuracy':<44}{'before':>8}{'after':>8}")
    for key in sorted(k for k in after if k.startswith(ACCURACY_PREFIX)):
        trainer.accelerator.print(f"{key[len('eval_') :]:<44}{before.get(key, float('nan')):8.3f}{after[key]:8.3f}")
    if trainer.accelerator.is_main_process:
        with open(os.path.join(output_dir, "eval_results.json"), "w", encoding="utf-8") as f:
            json.dump({"before": before, "after": after}, f, indent=2)
        per_user = {
            k[len(ACCURACY_PREFIX) + 1 :]: after[k] for k in sorted(after) if k.startswith(ACCURACY_PREFIX + "/")
        }
        user_label = "group" if training_args.group_column else "user"
        metrics = {k: v for k, v in after.items() if k.startswith(ACCURACY_PREFIX) or k == "eval_loss"}
        metrics.update({f"{k} (before training)": before[k] for k in metrics if k in before})
        write_run_outputs(
            output_dir,
            base_model=model_args.model_name_or_path,
            training_data=describe_dpo_data(
                script_args, dataset_args, train, held_out, training_args.condition_column
            ),
            metrics=metrics,
            user_accuracy=({k: before.get(f"{ACCURACY_PREFIX}/{k}") for k in per_user}, per_user),
            user_label=user_label,
        )
    # The main process wrote figures and the model card alone: the others wait for it, so that every process tears
    # the process group down together (a process leaving early can abort in gloo's teardown).
    trainer.accelerator.wait_for_everyone()
    trainer.end()


if __name__ == "__main__":  # `accelerate launch -m trl_custom.scripts.dpo`, what `trl-custom dpo` runs
    main(*make_parser().parse_args_and_config())
