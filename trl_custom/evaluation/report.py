# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Showing results: the condition x domain heatmap, the training curves of a run (from its `trainer_state.json`) and
per-user accuracy bars as PNG pictures (needs matplotlib: `pip install "trl-custom[plot]"`), and the evaluation
results as a text table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from ..data.preferences import DSP_DOMAINS, DSP_RESPONSE_KEYS


def new_figure(what: str, **kwargs):
    """
    A matplotlib `Figure` drawn without a display (Agg backend, no pyplot state), for scripts and benchmarks.

    Args:
        what (`str`): What is plotted, for the error message, e.g. `"the few-shot curve"`.
        **kwargs: `matplotlib.figure.Figure` arguments, e.g. `figsize`.

    Raises:
        ImportError: matplotlib is not installed; the message names the extra to install.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            f'Plotting {what} needs matplotlib: `pip install "trl-custom[plot]"` (or `pip install matplotlib`).'
        ) from e
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike) -> None:
    """Lay out `fig` (tight, unless it was made with a layout engine: `layout="constrained"`) and write it to `path`
    (PNG at 120 dpi), creating the folder."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=120)


def plot_heatmap(
    matrix: dict[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    xlabel: str = "evaluated domain",
    ylabel: str = "condition given to the model",
    value_label: str = "accuracy",
):
    """
    Save `matrix` (as returned by [`heatmap`], [`evaluate_pairs`] or [`evaluate_policy`]: `rows`, `columns` and
    `values` in [0, 1]) as an annotated heatmap image; rows whose condition the model was not trained on
    (`matrix["unseen"]`) are marked `*`, with a note under the title. `ylabel` and `value_label` (the color bar's)
    name what the rows and values are. Returns the matplotlib `Figure`.
    """
    rows, note = heatmap_row_labels(matrix)
    columns = matrix["columns"]
    values = [[float("nan") if v is None else v for v in row] for row in matrix["values"]]
    fig = new_figure("the heatmap", figsize=(1.6 * len(columns) + 2.5, 0.7 * len(rows) + 1.8 + 0.3 * bool(note)))
    ax = fig.subplots()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_xticks(range(len(columns)), labels=columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            text = "n/a" if v != v else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if v == v and v > 0.6 else "white")
    if title or note:
        ax.set_title("\n".join(t for t in (title, note) if t), fontsize="medium")
    save_figure(fig, path)
    return fig


def heatmap_row_labels(matrix: dict[str, Any]) -> tuple[list[str], str]:
    """The heatmap's row labels, `*` after those not seen in training, and the note saying how they were scored."""
    unseen = matrix.get("unseen") or {}
    labels = [f"{row} *" if row in unseen else row for row in matrix["rows"]]
    hows = sorted(set(unseen.values()))
    return labels, f"* not seen in training: {'; '.join(hows)}" if unseen else ""


def unseen_rows(results: dict[str, Any], section: str) -> dict[str, str]:
    """
    The rows of `results[section]` scored under a condition the model was not trained on, with how: the values in
    `results["unseen"]`, for the `pairs` section and for the `dsp` section of an `"auto"` condition (a forced
    condition applies to every DSP row: the table's title names it).
    """
    if section == "pairs" or (section == "dsp" and results.get("condition", "auto") == "auto"):
        return {name: how for name, how in (results.get("unseen") or {}).items() if name in results.get(section, {})}
    return {}


def row_note(results: dict[str, Any], section: str, name: str) -> str:
    """
    What a table row's accuracy needs beside it: `"unseen in training: ..."`, `"seen conditions only"` (a mean
    without the unseen rows), `"ties 30%, 30% identical after truncation"`; `""` when nothing.
    """
    parts = []
    unseen = unseen_rows(results, section)
    if name in unseen:
        parts.append(f"unseen in training: {unseen[name]}")
    elif name == "mean" and unseen:
        parts.append(f"seen conditions only, without {', '.join(unseen)}")
    n = results.get("counts", {}).get(section, {}).get(name)
    ties = results.get("ties", {}).get(section, {}).get(name)
    if n and ties:
        identical = results.get("identical", {}).get(section, {}).get(name) or 0
        parts.append(f"ties {ties / n:.0%}, {identical / n:.0%} identical after truncation")
    return f"  ({'; '.join(parts)})" if parts else ""


# Accuracy keys of the two trainers' logs: CustomRewardTrainer logs `accuracy` and `accuracy/<condition>`,
# PersonalizedDPOTrainer (like DPOTrainer) `rewards/accuracies` and `rewards/accuracies/<user or group>`.
ACCURACY_KEYS = ("accuracy", "rewards/accuracies")


def training_curves(log_history: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """
    The curves of a `trainer_state.json` log history: `{"loss": {name: [(step, value)]}, "accuracy": {...}}`, training
    and evaluation (`eval_` prefix), overall and per condition/user (`.../<value>`). An online-RL log (GRPO, RLOO: no
    accuracy) has `{"loss": ..., "reward": {...}}` instead: its mean reward and, when logged, the KL to the reference.
    """
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {"loss": {}, "accuracy": {}}
    rewards: dict[str, list[tuple[int, float]]] = {}
    for log in log_history:
        step = log.get("step")
        for key, value in log.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            name = key[len("eval_") :] if key.startswith("eval_") else key
            split = "eval" if key.startswith("eval_") else "train"
            if name == "loss":
                curves["loss"].setdefault(f"{split} loss", []).append((step, value))
            elif name in ("reward", "kl"):
                rewards.setdefault(f"{split} {name}", []).append((step, value))
            elif name in ACCURACY_KEYS:
                curves["accuracy"].setdefault(f"{split} overall", []).append((step, value))
            else:
                prefix = next((f"{k}/" for k in ACCURACY_KEYS if name.startswith(f"{k}/")), None)
                if prefix:
                    curves["accuracy"].setdefault(f"{split} {name[len(prefix) :]}", []).append((step, value))
    if not curves["accuracy"] and rewards:
        return {"loss": curves["loss"], "reward": rewards}
    return curves


def plot_training_curves(
    trainer_state: str | os.PathLike | Mapping[str, Any], path: str | os.PathLike, title: str | None = None
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """
    Save the loss and accuracy curves (overall and per condition/user, training and evaluation) of a run as an image;
    for an online-RL run (no accuracy logged), the loss and the mean reward (and KL when logged).

    Args:
        trainer_state (`str` or `dict`): A `trainer_state.json` file (written by `trainer.save_state()`) or its
            content.
        path (`str`): The image file (`.png`).
        title (`str`, *optional*): Title of the figure.

    Returns:
        `dict`: The plotted curves (see [`training_curves`]).

    Raises:
        `ValueError`: If the log history has no loss or accuracy values (e.g. `logging_steps` larger than the run).
    """
    if not isinstance(trainer_state, Mapping):
        with open(trainer_state, encoding="utf-8") as f:
            trainer_state = json.load(f)
    curves = training_curves(trainer_state.get("log_history", []))
    if not any(curves.values()):
        raise ValueError(
            "The trainer state logs no loss or accuracy: lower `logging_steps` (or set `eval_strategy`) to get curves."
        )
    panels = {name: series for name, series in curves.items() if series}
    fig = new_figure("training curves", figsize=(6 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels)) if len(panels) > 1 else [fig.subplots(1, 1)]
    for ax, (name, series) in zip(axes, panels.items(), strict=True):
        for label, points in sorted(series.items()):
            steps, values = zip(*points, strict=True)
            style = "o--" if label.startswith("eval") else "-"
            width = 2.5 if label.endswith(("overall", "loss")) else 1.2
            ax.plot(steps, values, style, label=label, linewidth=width, markersize=4)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if name == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        if series:
            ax.legend(fontsize="small", ncol=2 if len(series) > 8 else 1)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return curves


USER_CURVES = (("user_reward/", "reward"), ("user_completion_length/", "completion length (tokens)"))


def plot_user_rewards(
    trainer_state: str | os.PathLike | Mapping[str, Any], path: str | os.PathLike, title: str | None = None
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """
    Save the reward and the completion length per user (or group) of a personalized online-RL run
    (`user_reward/<name>`, `user_completion_length/<name>` in its log history) as an image.

    Raises:
        `ValueError`: If the log history has no per-user rewards (a run without users, or with more than 20 users and
            no `group_column`).
    """
    if not isinstance(trainer_state, Mapping):
        with open(trainer_state, encoding="utf-8") as f:
            trainer_state = json.load(f)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {label: {} for _, label in USER_CURVES}
    for entry in trainer_state.get("log_history", []):
        for key, value in entry.items():
            for prefix, label in USER_CURVES:
                if key.startswith(prefix) and isinstance(value, (int, float)) and math.isfinite(value):
                    curves[label].setdefault(key[len(prefix) :], []).append((entry.get("step", 0), value))
    if not any(curves.values()):
        raise ValueError("The trainer state logs no per-user rewards (user_reward/<user>): a run without users?")
    fig = new_figure("user rewards", figsize=(12, 4.5))
    for ax, (label, series) in zip(fig.subplots(1, 2), curves.items(), strict=True):
        for name, points in sorted(series.items()):
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, "-o", label=name, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.legend(fontsize="small", ncol=2 if len(series) > 8 else 1)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return curves


def plot_accuracy_bars(
    after: Mapping[str, float | None],
    path: str | os.PathLike,
    before: Mapping[str, float | None] | None = None,
    title: str | None = None,
    xlabel: str = "user",
) -> None:
    """Save held-out accuracy per user (or group, condition) as bars, before and after training side by side."""
    names = list(after)
    fig = new_figure("accuracy bars", figsize=(max(5.0, 0.8 * len(names) + 2.5), 4.0))
    ax = fig.subplots()
    series = ([("before", before)] if before else []) + [("after", after)]
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series):
        heights = [float("nan") if values.get(n) is None else values[n] for n in names]
        offsets = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        ax.bar(offsets, heights, width, label=label)
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy")
    ax.legend()
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def format_results(results: dict[str, Any]) -> str:
    """
    A small readable table of [`evaluate_reward_model`] / [`evaluate_pairs`] results (and the heatmap, if present):
    beside each accuracy its ties (and how many are identical inputs after truncation), rows of conditions the model
    was not trained on marked unseen.
    """

    def fmt(v):
        return "   n/a" if v is None else f"{v:6.3f}"

    lines = []
    if results.get("dsp"):
        counts = results["counts"]["dsp"]
        condition = results.get("condition")
        if condition != "auto" and condition in (results.get("unseen") or {}):
            condition = f"{condition}, unseen in training: {results['unseen'][condition]}"
        lines += [f"DSP accuracy (condition: {condition})", f"  {'domain':<16}{'pairs':>8}  accuracy"]
        lines += [
            f"  {d:<16}{counts[d]:>8}  {fmt(results['dsp'][d])}{row_note(results, 'dsp', d)}" for d in DSP_DOMAINS
        ]
        lines.append(
            f"  {'mean':<16}{counts['total']:>8}  {fmt(results['dsp']['mean'])}{row_note(results, 'dsp', 'mean')}"
        )
        by_rejected = results.get("dsp_by_rejected")
        if by_rejected:
            lines += [
                "DSP accuracy by the competing (rejected) response",
                f"  {'domain':<16}" + "".join(f"{o:>14}" for o in DSP_RESPONSE_KEYS),
            ]
            for d in DSP_DOMAINS:
                cells = [by_rejected[d].get(o) for o in DSP_RESPONSE_KEYS]
                lines.append(
                    f"  {d:<16}"
                    + "".join(f"{'-' if o == d else fmt(v):>14}" for o, v in zip(DSP_RESPONSE_KEYS, cells))
                )
    if results.get("general"):
        lines += ["General preference accuracy (no condition)", f"  {'file':<16}{'pairs':>8}  accuracy"]
        lines += [
            f"  {name:<16}{results['counts']['general'][name]:>8}  {fmt(acc)}{row_note(results, 'general', name)}"
            for name, acc in results["general"].items()
        ]
    if results.get("pairs"):
        column = results.get("condition_column") or "condition"
        lines += [f"Accuracy per {column} (each pair under its own condition)"]
        lines.append(f"  {column:<16}{'pairs':>8}  accuracy")
        counts = results["counts"]["pairs"]
        lines += [
            f"  {name:<16}{counts.get(name, ''):>8}  {fmt(acc)}{row_note(results, 'pairs', name)}"
            for name, acc in results["pairs"].items()
        ]
    matrix = results.get("heatmap")
    if matrix:
        labels, note = heatmap_row_labels(matrix)
        width = max(len(c) for c in matrix["columns"]) + 2
        lines.append("Heatmap (rows: condition given to the model, columns: evaluated domain / condition)")
        lines.append("  " + " " * 16 + "".join(f"{c:>{width}}" for c in matrix["columns"]))
        for row, values in zip(labels, matrix["values"], strict=True):
            lines.append(f"  {row:<16}" + "".join(f"{fmt(v):>{width}}" for v in values))
        if note:
            lines.append(f"  {note}")
    return "\n".join(lines)
