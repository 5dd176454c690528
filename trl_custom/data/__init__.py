# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""Preference data shared by every method: DSP query files, general `{text, score}` files, the built-in demo set."""

from .preferences import (
    ASSISTANT_MARKERS,
    DSP_DOMAINS,
    DSP_RESPONSE_KEYS,
    dsp_pairs,
    is_empty_response,
    load_dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
    mix_general_preferences,
    read_records,
    split_dsp_queries,
    split_transcript,
    write_general_pairs,
)


__all__ = [
    "ASSISTANT_MARKERS",
    "DSP_DOMAINS",
    "DSP_RESPONSE_KEYS",
    "dsp_pairs",
    "is_empty_response",
    "load_dsp_pairs",
    "load_dsp_queries",
    "load_general_pairs",
    "mix_general_preferences",
    "read_records",
    "split_dsp_queries",
    "split_transcript",
    "write_general_pairs",
]
