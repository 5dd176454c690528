# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The options of preference labelling ([`LabelConfig`]), of candidate generation ([`GenerationArguments`], shared
with the policy evaluation) and of where prompts come from ([`PromptArguments`])."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


PAIR_STRATEGIES = ("best_vs_worst", "all_pairs")


@dataclass
class PromptArguments:
    """
    Where the prompts come from (`trl-custom label-pairs` and `trl-custom evaluate-policy`): one of

    Args:
        dataset_name (`str` or `None`): Anything `datasets` reads (a local json/jsonl/parquet/csv file or folder, a
            `save_to_disk` folder, a Hub id), whose `prompt_column` holds the prompts (text or messages).
        dataset_split (`str`): Its split.
        dsp_file (`str` or `None`): Or a DSP query file (path or `https://` URL, cached): its `query` texts.
        prompt_column (`str`): The prompts' column of `dataset_name`.
        skip_prompts (`int`): Leave out the first prompts (e.g. those a reward model was trained on).
        max_prompts (`int` or `None`): Then keep at most this many.
    """

    dataset_name: str | None = field(default=None, metadata={"help": "Prompts: a file/folder datasets reads."})
    dataset_split: str = field(default="train", metadata={"help": "Split of dataset_name."})
    dsp_file: str | None = field(default=None, metadata={"help": "Prompts: a DSP query file (path or URL)."})
    prompt_column: str = field(default="prompt", metadata={"help": "Column of the prompts in dataset_name."})
    skip_prompts: int = field(default=0, metadata={"help": "Leave out the first prompts."})
    max_prompts: int | None = field(default=None, metadata={"help": "Keep at most this many prompts."})

    def __post_init__(self):
        if bool(self.dataset_name) == bool(self.dsp_file):
            raise ValueError("Give the prompts as one of --dataset_name (a prompt column) or --dsp_file (queries).")
        if self.skip_prompts < 0 or (self.max_prompts is not None and self.max_prompts < 1):
            raise ValueError(
                f"--skip_prompts must be >= 0 and --max_prompts >= 1, got {self.skip_prompts} and {self.max_prompts}."
            )


@dataclass
class GenerationArguments:
    """
    How a policy generates (transformers `generate`, batched and seeded).

    Args:
        max_new_tokens (`int`): Tokens per completion.
        do_sample (`bool`): Sample (`True`) or decode greedily.
        temperature (`float`), top_p (`float`), top_k (`int` or `None`): Sampling options (`top_k=None`: the
            model's generation config).
        repetition_penalty (`float`): transformers' repetition penalty (1.0: none).
        use_chat_template (`bool`): Give text prompts to the policy as a user message through its chat template
            (conversational prompts always go through it); the labelled rows are then conversational.
        generation_batch_size (`int`): Sequences per `generate` call (the candidates of a prompt stay together).
        seed (`int`): Each `generate` call is seeded with `seed` + the index of its first prompt, so a rerun with the
            same `generation_batch_size` reproduces the same completions.
        device (`str` or `None`): Where the models run (default: where they are): the commands load them there,
            [`label_pairs`] moves them there.
        dtype (`str` or `None`): The dtype of the models (`float32`, `bfloat16`, `float16`): the commands load them in
            it (`None`: float32); [`label_pairs`] refuses models in another dtype.
    """

    max_new_tokens: int = field(default=128, metadata={"help": "Tokens per completion."})
    do_sample: bool = field(default=True, metadata={"help": "Sample (true) or decode greedily (false)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    top_k: int | None = field(default=None, metadata={"help": "Top-k sampling (default: the model's)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty (1.0: none)."})
    use_chat_template: bool = field(
        default=False, metadata={"help": "Give text prompts to the policy as a user message (chat template)."}
    )
    generation_batch_size: int = field(default=16, metadata={"help": "Sequences per generate call."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})
    device: str | None = field(default=None, metadata={"help": "Device of the models."})
    dtype: str | None = field(
        default=None,
        metadata={"help": "dtype of the models (default: float32).", "choices": ("float32", "bfloat16", "float16")},
    )

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.generation_batch_size < 1:
            raise ValueError(
                f"max_new_tokens and generation_batch_size must be >= 1, got {self.max_new_tokens} and "
                f"{self.generation_batch_size}."
            )
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (or do_sample=false).")

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `model.generate`."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
            if self.top_k is not None:
                kwargs["top_k"] = self.top_k
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


@dataclass
class LabelConfig(GenerationArguments):
    r"""
    Configuration of [`label_pairs`]: candidates per prompt (generated or read), scored under every condition by a
    conditioned reward model, turned into preference pairs in TRL's format.

    Parameters:
        > Models

        reward_model (`str` or `None`):
            Folder of the conditioned reward model (anything [`RewardScorer`] loads, `pypi:` names too). Not needed
            when [`label_pairs`] is given the scorer.
        policy (`str` or `None`):
            Causal LM that generates the candidates (a folder, a `pypi:` name, a P-DPO policy); `None`: read them from
            `candidates_column`.
        policy_soft_tokens (`bool`, *optional*, defaults to `False`):
            Generate each condition's candidates under that condition's soft tokens (a policy trained by
            [`PersonalizedDPOTrainer`]): `num_candidates` per (prompt, condition), each scored under its own
            condition. Else one set of candidates per prompt, scored under every condition.

        > Conditions

        conditions (`list[str]` or `None`):
            The conditions (domains, users) to label for; `None`: every condition of the reward model.
        condition_column (`str` or `None`):
            Column of the written rows holding the condition; `None`: the reward model's (e.g. `domain`).
        allow_generic (`bool`, *optional*, defaults to `False`):
            Label conditions a non-strict reward model was not trained on, as it scores them (generic entry or
            template); without it they are an error naming them and the model's conditions.

        > Candidates

        num_candidates (`int`, *optional*, defaults to `4`):
            Candidates generated per prompt (n >= 2).
        candidates_column (`str` or `None`):
            Instead of generating: the column holding each prompt's list of candidate responses.
        scoring_batch_size (`int`, *optional*, defaults to `32`):
            Sequences per reward-model forward (rows of different conditions share a forward).
        max_length (`int` or `None`):
            Reward-model tokens per sequence; `None`: its training `max_length`. A scorer given to [`label_pairs`]
            must cut at it (else an error).

        > Pairs

        pair_strategy (`str`, *optional*, defaults to `"best_vs_worst"`):
            `"best_vs_worst"`: per prompt and condition, the best-scored candidate against the worst. `"all_pairs"`:
            every pair of candidates whose reward gap is above `min_margin`.
        min_margin (`float`, *optional*, defaults to `0.0`):
            Pairs whose reward gap is not above it are dropped (counted as `below_margin`).
        tie_tolerance (`float`, *optional*, defaults to `1e-6`):
            Gaps up to it are ties (dropped, counted apart: identical inputs after truncation score the same).
        near_duplicate_threshold (`float`, *optional*, defaults to `0.9`):
            Candidates of a prompt whose word-bigram Jaccard similarity to an earlier one reaches it are dropped as
            near duplicates (`1.0`: only exact duplicates).

        > Output

        output_file (`str` or `None`):
            JSON-lines file of the pairs (`prompt`, `chosen`, `rejected`, the condition column, `margin`,
            `chosen_reward`, `rejected_reward`), appended prompt by prompt; a rerun reuses the prompts finished.
        report_file (`str` or `None`):
            The JSON report (counts, length correlation, throughput); `None`: `<output_file>` with `.report.json`.
        overwrite (`bool`, *optional*, defaults to `False`):
            Start again instead of resuming an existing `output_file`.
    """

    reward_model: str | None = field(default=None, metadata={"help": "Conditioned reward model (folder)."})
    policy: str | None = field(default=None, metadata={"help": "Causal LM generating the candidates."})
    policy_soft_tokens: bool = field(
        default=False, metadata={"help": "Generate each condition's candidates under its soft tokens."}
    )
    conditions: list[str] | None = field(
        default=None, metadata={"help": "Conditions to label for (default: all of the reward model's)."}
    )
    condition_column: str | None = field(
        default=None, metadata={"help": "Condition column of the output (default: the reward model's)."}
    )
    allow_generic: bool = field(
        default=False, metadata={"help": "Label conditions a non-strict reward model was not trained on."}
    )
    num_candidates: int = field(default=4, metadata={"help": "Candidates per prompt (n >= 2)."})
    candidates_column: str | None = field(
        default=None, metadata={"help": "Column with each prompt's candidate responses (instead of a policy)."}
    )
    scoring_batch_size: int = field(default=32, metadata={"help": "Sequences per reward-model forward."})
    max_length: int | None = field(default=None, metadata={"help": "Reward-model tokens per sequence."})
    pair_strategy: str = field(
        default="best_vs_worst", metadata={"help": "'best_vs_worst' or 'all_pairs'.", "choices": PAIR_STRATEGIES}
    )
    min_margin: float = field(default=0.0, metadata={"help": "Drop pairs whose reward gap is not above it."})
    tie_tolerance: float = field(default=1e-6, metadata={"help": "Reward gaps up to it are ties."})
    near_duplicate_threshold: float = field(
        default=0.9, metadata={"help": "Word-bigram Jaccard similarity from which candidates are near duplicates."}
    )
    output_file: str | None = field(default=None, metadata={"help": "JSON-lines file of the pairs."})
    report_file: str | None = field(default=None, metadata={"help": "JSON report (default: next to output_file)."})
    overwrite: bool = field(default=False, metadata={"help": "Start again instead of resuming output_file."})

    def __post_init__(self):
        super().__post_init__()
        if self.num_candidates < 2:
            raise ValueError(
                f"num_candidates={self.num_candidates}: a pair needs at least 2 candidates per prompt (n >= 2)."
            )
        if self.pair_strategy not in PAIR_STRATEGIES:
            raise ValueError(f"pair_strategy={self.pair_strategy!r}: choose one of {PAIR_STRATEGIES}.")
        if self.min_margin < 0 or self.tie_tolerance < 0:
            raise ValueError(
                f"min_margin and tie_tolerance must be >= 0, got {self.min_margin}, {self.tie_tolerance}."
            )
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(
                f"near_duplicate_threshold must be in (0, 1] (1.0: exact duplicates only), got "
                f"{self.near_duplicate_threshold}."
            )
        if self.scoring_batch_size < 1:
            raise ValueError(f"scoring_batch_size must be >= 1, got {self.scoring_batch_size}.")
        if self.policy is not None and self.candidates_column is not None:
            raise ValueError("Give the candidates as one of --policy (generated) or --candidates_column (read).")
        if self.policy_soft_tokens and self.candidates_column is not None:
            raise ValueError("policy_soft_tokens generates the candidates: it does not go with candidates_column.")
        if self.conditions is not None and len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions has duplicates: {self.conditions}.")
        if self.output_file is not None and not self.output_file.endswith(".jsonl"):
            raise ValueError(
                f"output_file={self.output_file!r}: the pairs are written as JSON lines, name it *.jsonl."
            )

    @property
    def report_path(self) -> str | None:
        """Where the report goes: `report_file`, or `output_file` with `.report.json` for `.jsonl`."""
        if self.report_file or self.output_file is None:
            return self.report_file
        return os.path.splitext(self.output_file)[0] + ".report.json"

    @property
    def progress_path(self) -> str | None:
        """The list of finished prompts beside `output_file` (`.progress.jsonl`), read when resuming."""
        return None if self.output_file is None else os.path.splitext(self.output_file)[0] + ".progress.jsonl"

    def settings(self) -> dict[str, Any]:
        """The options that decide the labels: a resumed run must have the same (batch sizes, device may change)."""
        keys = (
            "reward_model", "policy", "policy_soft_tokens", "conditions", "condition_column", "allow_generic",
            "num_candidates", "candidates_column", "max_length", "pair_strategy", "min_margin", "tie_tolerance",
            "near_duplicate_threshold", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
            "repetition_penalty", "use_chat_template", "seed",
        )  # fmt: skip
        return {key: getattr(self, key) for key in keys}
