# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The parts of `benchmarks/gpu_scale.py` (its entry point): the speed sections `rm_scale` and `dpo` (`speed.py`), the
`dsp` accuracy section (`dsp.py`), their data (`data.py`), the results table (`report.py`) and the device carry
(`carry.py`)."""

from .carry import prepare_carry
from .dsp import DSP_MODELS, dsp
from .report import markdown
from .speed import DPO_VARIANTS, RM_VARIANTS, dpo, rm_scale


__all__ = ["DPO_VARIANTS", "DSP_MODELS", "RM_VARIANTS", "dpo", "dsp", "markdown", "prepare_carry", "rm_scale"]
