# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The results of `dsp_kfold.py`: `results.json` resumed cell by cell, mean ± std over folds per variant, the paired
difference to the reference variant, the markdown table and the chart."""

import json
import os
import statistics

from _shared import figure_or_none

from trl_custom.data import DSP_DOMAINS
from trl_custom.evaluation import save_figure

from .variants import VARIANTS


WEAK_CELLS = {"academy-vs-business": ("academy", "business"), "business-vs-academy": ("business", "academy")}
COLUMNS = [*DSP_DOMAINS, "mean", *WEAK_CELLS]


def load_results(path, setup):
    if not os.path.isfile(path):
        return {"setup": setup, "cells": {}, "errors": {}}
    with open(path) as f:
        results = json.load(f)
    diff = {k: (results["setup"].get(k), v) for k, v in setup.items() if results["setup"].get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise SystemExit(
            f"{path} was written with another setup ({changes}): rerun with the same settings to resume it, or use "
            "another --output_dir."
        )
    results.setdefault("errors", {})
    return results


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def summarize(results, reference):
    summary = {}
    for name, cells in results["cells"].items():
        row = {column: mean_std([cell[column] for cell in cells.values()]) for column in COLUMNS}
        row["folds"] = sorted(cells, key=int)
        row["s_per_step"] = mean_std([cell["s_per_step"] for cell in cells.values()])
        ref = results["cells"].get(reference, {})
        shared = [f for f in cells if f in ref]
        if name != reference and shared:  # paired by fold: the fold-to-fold variation cancels
            row[f"mean_minus_{reference}"] = mean_std([cells[f]["mean"] - ref[f]["mean"] for f in shared])
        summary[name] = row
    results["summary"] = summary
    results["reference"] = reference
    return results


def fmt(stat):
    if stat is None or stat["mean"] is None:
        return ""
    return f"{stat['mean']:.3f}" + ("" if stat["std"] is None else f" ± {stat['std']:.3f}")


def markdown(results):
    reference = results["reference"]
    delta = f"mean − {reference} (paired)"
    lines = [
        "| variant | folds | " + " | ".join(COLUMNS) + f" | {delta} | s/step |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    for name in VARIANTS:  # registry order
        row = results["summary"].get(name)
        if row is None:
            continue
        d = row.get(f"mean_minus_{reference}")
        delta_cell = "" if d is None else f"{d['mean']:+.3f}" + ("" if d["std"] is None else f" ± {d['std']:.3f}")
        lines.append(
            f"| {name} | {','.join(row['folds'])} | "
            + " | ".join(fmt(row[c]) for c in COLUMNS)
            + f" | {delta_cell} | {row['s_per_step']['mean']:.2f} |"
        )
    if results["errors"]:
        lines.append("")
    for name, errors in results["errors"].items():
        messages = {}
        for fold, message in errors.items():
            messages.setdefault(message, []).append(fold)
        for message, folds in messages.items():
            lines.append(f"- {name} failed (fold {', '.join(folds)}): {message}")
    return "\n".join(lines)


def plot(results, path):
    names = [n for n in VARIANTS if n in results["summary"]]
    if not names:
        return
    fig = figure_or_none("the k-fold chart", figsize=(max(6.0, 1.1 * len(names) + 2), 4.0))
    if fig is None:
        return
    shown = ["mean", *WEAK_CELLS]
    width = 0.8 / len(shown)
    ax = fig.subplots()
    for j, column in enumerate(shown):
        stats = [results["summary"][n][column] for n in names]
        ax.bar(
            [i + (j - (len(shown) - 1) / 2) * width for i in range(len(names))],
            [s["mean"] or 0.0 for s in stats],
            width,
            yerr=[s["std"] or 0.0 for s in stats],
            capsize=3,
            label=column,
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("held-out accuracy (mean ± std over folds)")
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
    save_figure(fig, path)
