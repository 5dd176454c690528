# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""A benchmark's results file, figures and mean ± std over seeds."""

import json
import math
import os
import statistics
import sys

from trl_custom.evaluation import new_figure


def save_results(results: dict, output_dir, name="results.json"):
    """Writes `results` as `output_dir/<name>` (after every variant or section, so a stopped run keeps its numbers)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, name), "w") as f:
        json.dump(results, f, indent=2)


def figure_or_none(what: str, **kwargs):
    """A matplotlib figure (`trl_custom.evaluation.new_figure`), or `None` with the reason on stderr when matplotlib
    is missing (the benchmark's numbers are written all the same); save it with `trl_custom.evaluation.save_figure`."""
    try:
        return new_figure(what, **kwargs)
    except ImportError as error:
        print(f"{error} No figure of {what} written.", file=sys.stderr)
        return None


def mean_std(values) -> dict:
    """`{"mean", "std"}` of `values` over seeds, NaNs left out (both NaN when none is left; std 0 for one value)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
