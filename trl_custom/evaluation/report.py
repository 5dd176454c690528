# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Showing evaluation results: the condition x domain heatmap as a picture and the results as a text table."""

from __future__ import annotations

import os
from typing import Any

from ..data.preferences import DSP_DOMAINS, DSP_RESPONSE_KEYS


def plot_heatmap(matrix: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Save `matrix` (as returned by [`heatmap`]) as an annotated heatmap image (needs matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plotting the heatmap needs matplotlib: `pip install trl-custom[plot]` (or `pip install matplotlib`)."
        ) from e
    rows, columns = matrix["rows"], matrix["columns"]
    values = [[float("nan") if v is None else v for v in row] for row in matrix["values"]]
    fig = Figure(figsize=(1.6 * len(columns) + 2.5, 0.7 * len(rows) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("evaluated domain")
    ax.set_ylabel("condition given to the model")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            text = "n/a" if v != v else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if v == v and v > 0.6 else "white")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=150)


def format_results(results: dict[str, Any]) -> str:
    """A small readable table of [`evaluate_reward_model`] results (and the heatmap, if present)."""

    def fmt(v):
        return "   n/a" if v is None else f"{v:6.3f}"

    lines = []
    if results.get("dsp"):
        counts = results["counts"]["dsp"]
        lines += [f"DSP accuracy (condition: {results.get('condition')})", f"  {'domain':<16}{'pairs':>8}  accuracy"]
        lines += [f"  {d:<16}{counts[d]:>8}  {fmt(results['dsp'][d])}" for d in DSP_DOMAINS]
        lines.append(f"  {'mean':<16}{counts['total']:>8}  {fmt(results['dsp']['mean'])}")
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
            f"  {name:<16}{results['counts']['general'][name]:>8}  {fmt(acc)}"
            for name, acc in results["general"].items()
        ]
    matrix = results.get("heatmap")
    if matrix:
        width = max(len(c) for c in matrix["columns"]) + 2
        lines.append("Heatmap (rows: condition given to the model, columns: evaluated domain)")
        lines.append("  " + " " * 16 + "".join(f"{c:>{width}}" for c in matrix["columns"]))
        for row, values in zip(matrix["rows"], matrix["values"], strict=True):
            lines.append(f"  {row:<16}" + "".join(f"{fmt(v):>{width}}" for v in values))
    return "\n".join(lines)
