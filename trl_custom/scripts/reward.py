# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The reward recipe (`recipes/reward.py`, `trl-custom reward`): its data arguments, data, training and evaluation.

Data comes from TRL's data arguments (`dataset_name`: a Hub id, a local folder of json/jsonl/parquet/csv files or a
`save_to_disk` folder; or a `datasets:` mixture), conditioned on its `condition_column`, or from DSP query files and
`{text, score}` general files (local paths or `https://` URLs). Stages of the DSP scheme, one YAML each in
`trl_custom/recipes/`:
- stage 2, general RM fine-tuning: `general_files` only, `condition_mode: none`;
- stage 3, customized RM fine-tuning: `dsp_file` (+ `general_files` with `enrichment_ratio > 0` for general
  preference enrichment, `imitation_coef > 0` for customized preference imitation), starting from the stage-2 output.

Every run evaluates the held-out data per condition before and after training and writes, beside the model, its
accuracies (`eval_results.json`), training curves, the condition x domain heatmap and a model card (`README.md`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, Value, concatenate_datasets
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, get_peft_config, get_quantization_config

from ..conditioned_rm.custom_reward_config import CustomRewardConfig
from ..data.checks import check_rows
from ..data.demo import make_demo_dsp_queries
from ..data.preferences import (
    DSP_DOMAINS,
    dsp_pairs,
    load_dsp_queries,
    load_general_pairs,
    mix_general_preferences,
    split_dsp_queries,
    write_general_pairs,
)
from ..data.sources import check_data_file, describe_source, load_data_source, resolve_data_file, train_test_split
from .outputs import check_plotting, flatten_results, ignore_bias_buffers, write_run_outputs
from .trl_parser import StrictTrlParser


logger = logging.getLogger(__name__)

HELD_OUT_DSP_FILE = "dsp_queries.json"


@dataclass
class RewardScriptArguments(ScriptArguments):
    """
    Data arguments of the reward recipe: TRL's [`~trl.ScriptArguments`] (`dataset_name`, `dataset_config`,
    `dataset_train_split`, `dataset_test_split`, `ignore_bias_buffers`; a `datasets:` mixture goes to
    [`~trl.DatasetMixtureConfig`]) plus the DSP / general preference files.

    Args:
        dsp_file (`str` or `None`): DSP query file (`{query, responses: {academy, ...}}`, JSON or JSON lines) as a
            local path or an `https://` URL (downloaded once into the Hugging Face cache), or `"demo"` for the built-in
            synthetic demo set. Trains customized pairs conditioned on `domain`.
        general_files (`list[str]` or `None`): General preference files (`{text: [a, b], score: [sa, sb]}`), paths or
            URLs.
        train_file (`str` or `None`): Preference pairs as JSON / JSON lines rows with `prompt`, `chosen`, `rejected`
            and optionally `margin` (e.g. written by `trl-custom augment`), used like one more general
            file: `general_eval_pairs` of them are held out for evaluation, the margins are trained on
            (rows from other sources get margin 0).
        domains (`list[str]`): DSP domains to train on.
        test_size (`float`): Fraction held out for evaluation (never trained on): of the DSP queries, or of the
            `dataset_train_split` of a dataset that has no `dataset_test_split`.
        max_queries (`int` or `None`): Cap on training DSP queries (CPU-sized runs).
        max_eval_queries (`int` or `None`): Cap on held-out DSP queries used for evaluation.
        max_eval_pairs (`int` or `None`): Cap on evaluation pairs of a dataset source (`dataset_name`/`datasets`).
        max_general_pairs (`int` or `None`): Cap on pairs read from each general file.
        enrichment_ratio (`float`): General preference enrichment: fraction of general pairs mixed into the
            customized stage (0 = off).
        evaluate_before (`bool`): Also evaluate the starting model, to print accuracy before/after.
        results_file (`str` or `None`): Where to write the before/after accuracies (JSON); default
            `<output_dir>/eval_results.json`.
    """

    dsp_file: str | None = field(default=None, metadata={"help": "DSP query file (path or https:// URL), or 'demo'."})
    general_files: list[str] | None = field(
        default=None, metadata={"help": "General preference files (paths or https:// URLs)."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "JSON/JSONL pairs (prompt, chosen, rejected[, margin]), e.g. augmented."}
    )
    domains: list[str] = field(default_factory=lambda: list(DSP_DOMAINS), metadata={"help": "DSP domains."})
    test_size: float = field(default=0.2, metadata={"help": "Fraction held out (DSP queries, or a dataset's pairs)."})
    max_queries: int | None = field(default=None, metadata={"help": "Cap on training DSP queries."})
    max_eval_queries: int | None = field(default=None, metadata={"help": "Cap on held-out DSP queries."})
    max_eval_pairs: int | None = field(default=None, metadata={"help": "Cap on evaluation pairs of a dataset."})
    max_general_pairs: int | None = field(default=None, metadata={"help": "Cap on pairs per general file."})
    general_eval_pairs: int = field(default=200, metadata={"help": "General pairs per file held out for evaluation."})
    enrichment_ratio: float = field(
        default=0.0, metadata={"help": "Fraction of general pairs in the customized stage."}
    )
    evaluate_before: bool = field(default=True, metadata={"help": "Evaluate the starting model too."})
    results_file: str | None = field(default=None, metadata={"help": "JSON file for the before/after accuracies."})

    def __post_init__(self):
        files = [("--dsp_file", self.dsp_file)] if self.dsp_file not in (None, "demo") else []
        files += [("--general_files", path) for path in self.general_files or []]
        files += [("--train_file", self.train_file)] if self.train_file else []
        for flag, path in files:
            check_data_file(path, flag)
        if self.dataset_name and (self.dsp_file or self.general_files or self.train_file):
            raise ValueError(
                f"dataset_name={self.dataset_name} and --dsp_file/--general_files/--train_file are two data sources: "
                "give one (TRL's data arguments, or the DSP/general files)."
            )
        if not 0.0 <= self.enrichment_ratio < 1.0:
            raise ValueError(f"enrichment_ratio must be in [0, 1), got {self.enrichment_ratio}.")
        if self.enrichment_ratio > 0 and not (self.dsp_file and (self.general_files or self.train_file)):
            raise ValueError(
                "enrichment_ratio > 0 mixes general pairs into DSP pairs: give --dsp_file and --general_files (or "
                "--train_file)."
            )


@dataclass
class RewardData:
    """
    The data of a reward recipe run: `train`, and what it is evaluated on: held-out DSP queries, held-out general
    files (`{text, score}`) and/or a held-out preference dataset (`eval_dataset`, from a dataset source). `source`
    describes where it came from (for the model card).
    """

    train: Dataset
    eval_queries: list[dict]
    general_eval_files: list[str]
    eval_dataset: Dataset | None = None
    source: str = ""


def build_reward_data(
    args: RewardScriptArguments,
    eval_dir: str,
    condition_column: str = "domain",
    seed: int = 0,
    dataset_args: DatasetMixtureConfig | None = None,
) -> RewardData:
    """
    Training pairs and held-out evaluation data.

    With a dataset source (`args.dataset_name` or `dataset_args.datasets`): its `dataset_train_split`, evaluated on
    its `dataset_test_split` (or `test_size` of the training split held out). Otherwise DSP train queries, general
    pairs and `train_file` pairs, or a mix, with the held-out data written to `eval_dir` in the formats the evaluator
    reads: DSP queries to `dsp_queries.json`, general pairs to `<file stem>.json` (`{text, score}`). When `train_file`
    has a `margin` column, pairs from other general files get margin 0.
    """
    if args.dataset_name or (dataset_args is not None and dataset_args.datasets):
        if args.dsp_file or args.general_files or args.train_file:
            raise ValueError(
                "A `datasets:` mixture and --dsp_file/--general_files/--train_file are two data sources: give one."
            )
        train, held_out, split = load_dataset_splits(args, dataset_args, seed)
        held_out = held_out.select(range(min(args.max_eval_pairs, len(held_out)))) if args.max_eval_pairs else held_out
        source = f"{describe_source(args, dataset_args)}: `{args.dataset_train_split}` ({len(train)} pairs) trained on"
        source += f", {split} evaluated ({len(held_out)} pairs)."
        return RewardData(train, [], [], eval_dataset=held_out, source=source)
    if args.dsp_file is None and not args.general_files and args.train_file is None:
        raise ValueError(
            "Give training data: --dataset_name NAME_OR_FOLDER (or a `datasets:` mixture in the YAML), or --dsp_file "
            "FILE_OR_URL (or 'demo'), --general_files FILE [FILE ...] and/or --train_file FILE."
        )
    eval_queries: list[dict] = []
    train = None
    described = []
    if args.dsp_file:
        if args.dsp_file == "demo":
            queries = make_demo_dsp_queries()
        else:
            queries = load_dsp_queries(resolve_data_file(args.dsp_file, "--dsp_file"))
        train_queries, eval_queries = split_dsp_queries(queries, args.test_size, seed=seed)
        eval_queries = eval_queries[: args.max_eval_queries] if args.max_eval_queries else eval_queries
        os.makedirs(eval_dir, exist_ok=True)
        with open(os.path.join(eval_dir, HELD_OUT_DSP_FILE), "w", encoding="utf-8") as f:
            json.dump(eval_queries, f, ensure_ascii=False)
        train = dsp_pairs(
            train_queries, domains=args.domains, condition_column=condition_column, max_queries=args.max_queries
        )
        name = "the built-in synthetic demo set" if args.dsp_file == "demo" else f"`{args.dsp_file}`"
        described.append(
            f"DSP queries from {name}: {len(train_queries)} trained on (domains {', '.join(args.domains)}), "
            f"{len(eval_queries)} held out for evaluation."
        )
    general = None
    general_eval_files = []
    if args.general_files or args.train_file:
        parts = []
        os.makedirs(eval_dir, exist_ok=True)
        load_general = lambda p: load_general_pairs(p, skip_empty=True)  # noqa: E731
        sources = [(path, "--general_files", load_general) for path in args.general_files or []]
        sources += [(args.train_file, "--train_file", load_train_file)] if args.train_file else []
        for path, flag, load in sources:
            pairs = load(resolve_data_file(path, flag)).shuffle(seed=seed)
            held_out = min(args.general_eval_pairs, len(pairs) // 5)
            parts.append(
                pairs.select(range(held_out, min(len(pairs), held_out + (args.max_general_pairs or len(pairs)))))
            )
            eval_path = os.path.join(eval_dir, f"{os.path.splitext(os.path.basename(path))[0]}.json")
            write_general_pairs(pairs.select(range(held_out)), eval_path)
            general_eval_files.append(eval_path)
            described.append(f"General pairs from `{path}`: {len(parts[-1])} trained on, {held_out} held out.")
        general = concatenate_datasets(_with_common_columns(parts))
    if train is None:
        train = general
    elif general is not None and args.enrichment_ratio > 0:
        train = mix_general_preferences(
            train, general, args.enrichment_ratio, seed=seed, condition_column=condition_column
        )
        described.append(f"General preference enrichment: {args.enrichment_ratio:.0%} general pairs mixed in.")
    return RewardData(train, eval_queries, general_eval_files, source=" ".join(described))


def load_dataset_splits(
    script_args,
    dataset_args,
    seed: int,
    listwise: bool = True,
    margins: bool = True,
    feature_columns: list[str] | None = None,
) -> tuple[Dataset, Dataset, str]:
    """
    Train and evaluation splits of TRL's data arguments: `dataset_train_split`, and `dataset_test_split` when the
    dataset has it, else `test_size` (a mixture's `test_split_size` if set) of the training split, split with `seed`
    (the same split in every process).

    Every row of the splits used is checked first ([`~trl_custom.data.checks.check_rows`]: text types, empty responses,
    `margins`, `feature_columns`), so that an error names the row of the user's split (of a mixture: of the mixture's
    concatenated rows), and a bad row in the held-out part fails before training. `listwise`: a list of rejected
    responses is a listwise row (the reward recipe's data, not the P-DPO recipe's).
    """
    test_size = script_args.test_size
    if dataset_args is not None and dataset_args.test_split_size is not None:
        import copy

        test_size = dataset_args.test_split_size
        dataset_args = copy.copy(dataset_args)
        dataset_args.test_split_size = None  # TRL's get_dataset would split without a seed
    dataset = load_data_source(script_args, dataset_args)
    splits = (script_args.dataset_train_split, script_args.dataset_test_split)
    used = DatasetDict({split: dataset[split] for split in dict.fromkeys(splits) if split in dataset})
    check_rows(used, script_args.dataset_name or "the `datasets:` mixture", listwise, margins, feature_columns or [])
    return train_test_split(
        dataset, script_args.dataset_train_split, script_args.dataset_test_split, test_size, seed=seed
    )


def load_train_file(path: str) -> Dataset:
    """
    Text preference pairs (`prompt` optional, `chosen`, `rejected`, optional `margin`) from JSON / JSON lines, checked
    row by row, margins included, as the rows of the file (see [`~trl_custom.margin.agreement.load_pairs_file`]);
    other columns (`agreement`, flags, ...) are kept aside.
    """
    from ..margin.agreement import load_pairs_file

    pairs = load_pairs_file(path)
    name = os.path.basename(path)
    for column in ("prompt", "chosen", "rejected"):
        if column in pairs.column_names:
            for index, value in enumerate(pairs[column]):
                if not isinstance(value, str):
                    raise ValueError(
                        f"{name}: row {index} has a {type(value).__name__} '{column}'; --train_file takes text pairs "
                        "(conversational pairs: build the dataset in Python and pass it to CustomRewardTrainer)."
                    )
    if "prompt" not in pairs.column_names:
        pairs = pairs.add_column("prompt", [""] * len(pairs))
    columns = ["prompt", "chosen", "rejected"] + (["margin"] if "margin" in pairs.column_names else [])
    return pairs.select_columns(columns)


def _with_common_columns(parts: list[Dataset]) -> list[Dataset]:
    """Give every part the same columns: `margin` (0.0 where absent) when any part has one."""
    if not any("margin" in part.column_names for part in parts):
        return [part.select_columns(["prompt", "chosen", "rejected"]) for part in parts]
    out = []
    for part in parts:
        if "margin" not in part.column_names:
            part = part.add_column("margin", [0.0] * len(part))
        part = part.select_columns(["prompt", "chosen", "rejected", "margin"])
        out.append(part.cast_column("margin", Value("float64")))
    return out


def print_before_after(before: dict | None, after: dict) -> str:
    """
    Accuracy per condition (held-out DSP domains, general files, dataset conditions) before and after training, each
    row with its note (ties, identical pairs after truncation, unseen condition; see [`row_note`]).
    """
    from ..evaluation.report import row_note

    lines = [f"{'held-out accuracy':<28}{'before':>8}{'after':>8}"]
    column = after.get("condition_column") or "pairs"
    for section, prefix in (("dsp", "DSP "), ("general", "general "), ("pairs", f"{column} ")):
        for name, value in after.get(section, {}).items():
            old = before.get(section, {}).get(name) if before else None
            label = f"{prefix}{name}"
            lines.append(
                f"{label:<28}{'' if old is None else f'{old:8.3f}':>8}{'' if value is None else f'{value:8.3f}':>8}"
                + row_note(after, section, name)
            )
    return "\n".join(lines)


def evaluate_scorer(scorer, data: RewardData, with_heatmap: bool, progress: bool = True) -> dict:
    """Held-out accuracies of `data` (DSP per domain, general per file, a dataset per condition) and the heatmap."""
    from ..evaluation.accuracy import default_heatmap_rows, evaluate_reward_model, heatmap
    from ..evaluation.pairs import evaluate_pairs, merge_results

    cache: dict = {}
    results = evaluate_reward_model(
        scorer, data.eval_queries or None, data.general_eval_files, progress=progress, cache=cache
    )
    if data.eval_dataset is not None:
        pairs = evaluate_pairs(
            scorer,
            data.eval_dataset,
            scorer.conditioning.column,
            with_heatmap=with_heatmap,
            progress=progress,
            cache=cache,
        )
        merge_results(results, pairs)
    elif with_heatmap and data.eval_queries and scorer.conditioning.mode != "none":
        results["heatmap"] = heatmap(
            scorer, data.eval_queries, default_heatmap_rows(scorer), progress=progress, cache=cache
        )
    return results


# More than this fraction of an evaluated set identical after truncation is announced at the start of a run.
IDENTICAL_WARNING_FRACTION = 0.02


def check_evaluated_sets(
    scorer, data: RewardData, args: CustomRewardConfig, main_process: bool = True
) -> dict[str, float]:
    """
    Before training, what would make the held-out accuracies misleading, on every evaluated set (held-out DSP pairs,
    general files, evaluation dataset): condition values the model is not trained on (refused for a strict model,
    announced otherwise, see [`unseen_conditions`]) and, on the main process, pairs whose chosen and rejected inputs
    are the same after the model's truncation (always a tie, counted as an error), announced when more than
    `IDENTICAL_WARNING_FRACTION` of a set with the fix (`args`: the run's truncation settings).

    Returns:
        `dict`: `{set name: fraction of its pairs identical after truncation}` (empty off the main process).
    """
    from ..evaluation.accuracy import identical_pairs, unseen_conditions
    from ..evaluation.pairs import pair_columns

    conditioned = scorer.conditioning.mode != "none"
    sets = []
    if data.eval_queries:
        rows = dsp_pairs(data.eval_queries).to_dict()
        conditions = rows["domain"] if conditioned else [None] * len(rows["domain"])
        sets.append(("held-out DSP pairs", rows["prompt"], rows["chosen"], rows["rejected"], conditions))
    for path in data.general_eval_files:
        pairs = load_general_pairs(path, drop_ties=True, skip_empty=True)
        name = f"held-out general pairs of {os.path.basename(path)}"
        sets.append((name, pairs["prompt"], pairs["chosen"], pairs["rejected"], [None] * len(pairs)))
    if data.eval_dataset is not None:
        prompts, chosen, rejected, _, own = pair_columns(scorer, data.eval_dataset, scorer.conditioning.column)
        sets.append(("evaluation dataset", prompts, chosen, rejected, own))
    for name, _, _, _, conditions in sets:
        unseen_conditions(scorer, set(conditions), f"The {name}", warn=main_process)
    fractions = {}
    settings = f"max_length={args.max_length}, truncation_mode={args.truncation_mode!r}"
    settings += f", max_prompt_length={args.max_prompt_length}" if args.max_prompt_length is not None else ""
    other_mode = ", or use truncation_mode='head_tail' (keeps the end of the response)"
    for name, prompts, chosen, rejected, conditions in sets if main_process else ():
        same = identical_pairs(scorer, prompts, chosen, rejected, conditions)
        fractions[name] = sum(same) / len(same) if same else 0.0
        if fractions[name] > IDENTICAL_WARNING_FRACTION:
            message = (
                f"{fractions[name]:.0%} of the {name} ({sum(same)} of {len(same)}) are the same input for chosen and "
                f"rejected after truncation ({settings}): the model cannot tell them apart and the held-out accuracy "
                "counts them as errors (reported as ties). Set max_prompt_length (a budget for the prompt), raise "
                f"max_length{other_mode if args.truncation_mode == 'keep_start' else ''}."
            )
            logger.warning(message)
            print(f"⚠️  {message}")
    return fractions


def make_parser(prog: str | None = None) -> StrictTrlParser:
    """The recipe's parser: its data arguments, [`CustomRewardConfig`], `ModelConfig`, `DatasetMixtureConfig`."""
    return StrictTrlParser((RewardScriptArguments, CustomRewardConfig, ModelConfig, DatasetMixtureConfig), prog=prog)


def main(
    script_args: RewardScriptArguments,
    training_args: CustomRewardConfig,
    model_args: ModelConfig,
    dataset_args: DatasetMixtureConfig | None = None,
) -> None:
    """Train, evaluate before/after per condition, save the model with its results (see the module docstring)."""
    from ..conditioned_rm.custom_reward_trainer import CustomRewardTrainer
    from ..conditioned_rm.scoring import RewardScorer
    from ..models import check_quantization, resolve_model_path

    check_quantization(model_args)
    check_plotting()
    model_path = resolve_model_path(model_args.model_name_or_path)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    output_dir = training_args.output_dir
    data = build_reward_data(
        script_args, os.path.join(output_dir, "held_out"), training_args.condition_column, training_args.seed,
        dataset_args,
    )  # fmt: skip
    trainer = CustomRewardTrainer(
        model=model_path,
        args=training_args,
        train_dataset=data.train,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    ignore_bias_buffers(trainer, script_args)
    spec = trainer.conditioning  # `condition_mode: auto` resolved from the data
    data.source += (
        f" Conditioned on `{spec.column}` ({spec.mode} mode)." if spec.mode != "none" else " Not conditioned."
    )

    def make_scorer():  # of trainer.model as it is now (training may wrap it, e.g. FSDP)
        return RewardScorer(
            trainer.model,
            trainer.processing_class,
            trainer.conditioning,
            max_length=training_args.max_length,
            batch_size=training_args.per_device_eval_batch_size,
        )

    check_evaluated_sets(make_scorer(), data, training_args, main_process=trainer.accelerator.is_main_process)

    def evaluate(with_heatmap: bool):
        trainer.model.eval()
        results = evaluate_scorer(make_scorer(), data, with_heatmap, progress=not training_args.disable_tqdm)
        trainer.model.train()
        return results

    main_process = trainer.accelerator.is_main_process
    before = evaluate(with_heatmap=False) if script_args.evaluate_before and main_process else None
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(output_dir)
    trainer.save_state()  # trainer_state.json: the logged losses and metrics
    trainer.accelerator.print(f"💾 Model saved to {output_dir}.")
    if main_process:
        after = evaluate(with_heatmap=True)
        print(print_before_after(before, after))
        results_file = script_args.results_file or os.path.join(output_dir, "eval_results.json")
        with open(results_file, "w", encoding="utf-8") as f:
            json.dump({"before": before, "after": after}, f, indent=2)
        print(f"Held-out accuracies written to {results_file}.")
        column = training_args.condition_column if data.eval_dataset is not None else "domain"
        write_run_outputs(
            output_dir,
            base_model=model_args.model_name_or_path,
            training_data=data.source,
            metrics=flatten_results(before, after),
            heatmap=after.get("heatmap"),
            heatmap_xlabel=f"evaluated {column}",
        )
    # The main process wrote figures and the model card alone: the others wait for it, so that every process tears
    # the process group down together (a process leaving early can abort in gloo's teardown).
    trainer.accelerator.wait_for_everyone()
    trainer.end()


if __name__ == "__main__":  # `accelerate launch -m trl_custom.scripts.reward`, what `trl-custom reward` runs
    main(*make_parser().parse_args_and_config())
