# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
What every recipe run leaves in its output folder besides the model: `training_curves.png` (from
`trainer_state.json`), `heatmap.png` (reward models: condition given x evaluated condition) or
`user_accuracy.png` (P-DPO: held-out accuracy per user/group, before and after), and the model card `README.md`
(per-condition metrics, data source, the command that made it).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any


logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
HEATMAP_FILE = "heatmap.png"
USER_ACCURACY_FILE = "user_accuracy.png"
USER_REWARDS_FILE = "user_rewards.png"
# Set by `trl-custom <command>` for the process it launches, so that the model card shows the command as typed.
COMMAND_ENV = "TRL_CUSTOM_COMMAND"
NO_MATPLOTLIB = (
    "matplotlib is not installed: the run writes no PNG figures (training curves, heatmap / accuracy bars). Install "
    'the plot extra to get them: pip install "trl-custom[plot]" (or pip install matplotlib).'
)


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def check_plotting() -> None:
    """Warn before training, not after it, when the figures cannot be drawn."""
    if not has_matplotlib():
        logger.warning(NO_MATPLOTLIB)
        print(f"⚠️  {NO_MATPLOTLIB}")


def run_command() -> str:
    """The command line of this run: as typed to `trl-custom`, else this process's (under `accelerate launch`)."""
    if os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    script, args = (sys.argv or [""])[0], sys.argv[1:]
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../trl_custom
    if os.path.abspath(script).startswith(package + os.sep):  # run as a module (`-m trl_custom.scripts.reward`)
        module = os.path.relpath(os.path.splitext(os.path.abspath(script))[0], os.path.dirname(package))
        script = "-m " + module.replace(os.sep, ".")
    elif os.path.isabs(script) and script.startswith(os.getcwd() + os.sep):
        script = os.path.relpath(script)
    launcher = "accelerate launch" if "ACCELERATE_MIXED_PRECISION" in os.environ else "python"
    return " ".join([launcher, script] + [shlex.quote(a) for a in args])


def ignore_bias_buffers(trainer, script_args) -> None:
    """TRL's `ignore_bias_buffers`: keep boolean buffers out of DDP's broadcast (as TRL's DPO script does)."""
    if getattr(script_args, "ignore_bias_buffers", False):
        import torch

        from .. import trl_seams

        names = [name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool]
        trl_seams.ignore_ddp_buffers(trainer.model, names)


def flatten_results(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """
    The per-condition accuracies of a reward recipe's results as model-card metrics:
    `{"accuracy/<section>/<name>": after, "accuracy/<section>/<name> (before training)": before}`; a row of a condition
    the model was not trained on says so in its name (`... (unseen in training: scored with the generic entry)`), a
    mean without those rows too (`... (seen conditions only)`), and a row with ties gets
    `"ties/<section>/<name>": "12 of 40 pairs (30%), 12 identical after truncation"`.
    """
    from ..evaluation.report import unseen_rows

    metrics: dict[str, Any] = {}
    column = after.get("condition_column") or "pairs"
    for section, label in (("dsp", "dsp"), ("general", "general"), ("pairs", column)):
        unseen = unseen_rows(after, section)
        for name, value in after.get(section, {}).items():
            if value is None:
                continue
            key = f"accuracy/{label}/{name}"
            if name in unseen:
                key += f" (unseen in training: {unseen[name]})"
            elif name == "mean" and unseen:
                key += " (seen conditions only)"
            metrics[key] = value
            old = (before or {}).get(section, {}).get(name)
            if old is not None:
                metrics[f"{key} (before training)"] = old
            ties = after.get("ties", {}).get(section, {}).get(name)
            if ties:
                n = after["counts"][section][name]
                identical = after.get("identical", {}).get(section, {}).get(name) or 0
                metrics[f"ties/{label}/{name}"] = (
                    f"{ties} of {n} pairs ({ties / n:.0%}), {identical} identical after truncation"
                )
    return metrics


def write_run_outputs(
    output_dir: str,
    *,
    base_model: str | None,
    training_data: str,
    metrics: Mapping[str, Any],
    heatmap: Mapping[str, Any] | None = None,
    heatmap_xlabel: str = "evaluated domain",
    user_accuracy: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
    user_label: str = "user",
    user_rewards: bool = False,
    command: str | None = None,
) -> dict[str, str]:
    """
    Write the figures and the model card of a finished run into `output_dir` (which holds the saved model and
    `trainer_state.json`).

    Args:
        output_dir (`str`): The run's output folder.
        base_model (`str`): The model the run started from.
        training_data (`str`): Where the data came from and how it was split.
        metrics (`dict`): Per-condition metrics for the card.
        heatmap (`dict`, *optional*): A reward model's condition x evaluated-condition accuracies.
        heatmap_xlabel (`str`): Its x-axis label.
        user_accuracy (`tuple`, *optional*): P-DPO's `(before, after)` held-out accuracy per user or group.
        user_label (`str`): What the bars are (`"user"`, `"group"`).
        user_rewards (`bool`): An online-RL run: draw its reward and completion length per user (`user_rewards.png`).
        command (`str`, *optional*): The command of the run; defaults to [`run_command`].

    Returns:
        `dict`: `{caption: file}` of what was written.
    """
    from ..downstream.export import write_model_card

    written: dict[str, str] = {}
    figures: dict[str, str] = {}
    title = os.path.basename(os.path.normpath(output_dir))
    if has_matplotlib():
        from ..evaluation.report import plot_accuracy_bars, plot_heatmap, plot_training_curves, plot_user_rewards

        state = os.path.join(output_dir, "trainer_state.json")
        try:
            curves = plot_training_curves(state, os.path.join(output_dir, CURVES_FILE), title=title)
            shown = {"loss": "loss", "accuracy": "accuracy overall and per condition", "reward": "mean reward"}
            figures[f"Training curves ({', '.join(shown[k] for k, v in curves.items() if v)})"] = CURVES_FILE
        except (FileNotFoundError, ValueError) as e:
            print(f"No training curves: {e}")
        if heatmap and heatmap.get("rows"):
            plot_heatmap(heatmap, os.path.join(output_dir, HEATMAP_FILE), title=title, xlabel=heatmap_xlabel)
            figures["Held-out accuracy, condition given to the model x evaluated condition"] = HEATMAP_FILE
        if user_rewards:
            try:
                plot_user_rewards(state, os.path.join(output_dir, USER_REWARDS_FILE), title=title)
                figures["Reward and completion length per user during training"] = USER_REWARDS_FILE
            except (FileNotFoundError, ValueError) as e:
                print(f"No per-user reward curves: {e}")
        if user_accuracy and user_accuracy[1]:
            before, after = user_accuracy
            path = os.path.join(output_dir, USER_ACCURACY_FILE)
            plot_accuracy_bars(after, path, before=before or None, title=title, xlabel=user_label)
            figures[f"Held-out implicit-reward accuracy per {user_label}, before and after training"] = (
                USER_ACCURACY_FILE
            )
    else:
        print(f"⚠️  {NO_MATPLOTLIB}")
    card = write_model_card(
        output_dir,
        base_model=base_model,
        training_data=training_data,
        metrics=metrics,
        command=command or run_command(),
        figures=figures,
    )
    written.update(figures)
    written["Model card"] = os.path.basename(card)
    for caption, name in written.items():
        print(f"{caption}: {os.path.join(output_dir, name)}")
    return written
