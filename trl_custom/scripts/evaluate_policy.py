# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
`trl-custom evaluate-policy`: a personalized policy against its base policy, under a judge reward model
([`evaluate_policy`]).

```bash
trl-custom evaluate-policy --policy outputs/pdpo-labelled --judge outputs/dsp-judge --dsp_file path/to/held_out.json \\
    --max_prompts 50 --use_chat_template true --output_dir outputs/pdpo-labelled/policy-eval
```

Held-out prompts are completed under each condition (the policy's soft tokens; `--condition_mode text` writes the
condition into the prompt, for a policy trained that way by hand; `none`: one completion for all) and by the base
policy (`--base_policy`, or the LoRA policy with its adapter off); the judge scores them all under every condition.
Writes `<output_dir>/policy_eval.json` (win rates per condition, the generation x judge matrix of win rates and of
mean rewards, the generations) and `<output_dir>/policy_heatmap.png`. The judge should not be the reward model that
labelled the policy's training pairs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..labelling.label_config import GenerationArguments, PromptArguments
from ..soft_tokens.spec import DEFAULT_TEMPLATE
from .label_pairs import load_judge, load_policy, parse
from .trl_parser import StrictTrlParser


RESULTS_FILE = "policy_eval.json"
HEATMAP_FILE = "policy_heatmap.png"


@dataclass
class EvaluatePolicyArguments(GenerationArguments):
    """
    Arguments of `trl-custom evaluate-policy` (the generation ones: [`GenerationArguments`], greedy by default).

    Args:
        policy (`str`): The policy (P-DPO folder, LoRA adapter, causal LM folder or `pypi:` name).
        judge (`str`): The judge: a conditioned reward model that did not label the policy's training pairs.
        output_dir (`str`): Where `policy_eval.json` and `policy_heatmap.png` go.
        base_policy (`str` or `None`): The base policy; `None`: the LoRA policy with its adapter off.
        conditions (`list[str]` or `None`): The conditions; `None`: the judge's.
        condition_mode (`str`): `"auto"` (soft tokens when the policy has them, else `"none"`), `"embedding"`,
            `"text"` (the condition written into the prompt with `condition_template`) or `"none"`.
        condition_template (`str`): The template of `"text"`.
        allow_generic (`bool`): Evaluate conditions the judge (or the policy) was not trained on.
        scoring_batch_size (`int`): Sequences per judge forward.
    """

    policy: str | None = field(default=None, metadata={"help": "The policy to evaluate."})
    judge: str | None = field(default=None, metadata={"help": "Judge reward model (did not label the pairs)."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder of the results and heatmap."})
    base_policy: str | None = field(default=None, metadata={"help": "Base policy (default: the adapter off)."})
    conditions: list[str] | None = field(default=None, metadata={"help": "Conditions (default: the judge's)."})
    condition_mode: str = field(
        default="auto",
        metadata={"help": "'auto', 'embedding', 'text' or 'none'.", "choices": ("auto", "embedding", "text", "none")},
    )
    condition_template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "Template of condition_mode text."})
    allow_generic: bool = field(default=False, metadata={"help": "Allow conditions the judge was not trained on."})
    scoring_batch_size: int = field(default=32, metadata={"help": "Sequences per judge forward."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (true) or decode greedily (false)."})


def make_parser(prog: str | None = None) -> StrictTrlParser:
    return StrictTrlParser((EvaluatePolicyArguments, PromptArguments), prog=prog)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    parser = make_parser(prog)
    args, prompt_args = parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for flag in ("policy", "judge", "output_dir"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag} is required.")

    from ..evaluation.policy import evaluate_policy, format_policy_results, plot_policy_matrix, resolve_policy_mode
    from ..labelling.generation import check_can_generate
    from ..labelling.labelling import check_conditions
    from ..labelling.prompts import load_prompts
    from ..record import ModelRecord
    from ..scripts.outputs import has_matplotlib

    try:
        prompts = [row[prompt_args.prompt_column] for row in load_prompts(prompt_args)]
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        parser.error(str(e))
    judge = load_judge(args.judge, args.device, args.dtype, batch_size=args.scoring_batch_size)
    policy, tokenizer = load_policy(args.policy, args.device, args.dtype)
    base, base_tokenizer = load_policy(args.base_policy, args.device, args.dtype) if args.base_policy else (None, None)
    conditions = args.conditions or judge.conditioning.conditions
    try:  # the checks evaluate_policy starts with, as one-line errors before anything is generated
        mode = resolve_policy_mode(policy, args.condition_mode)
        check_conditions(judge.conditioning, conditions, args.allow_generic, what="judge")
        if mode == "embedding":
            check_conditions(ModelRecord.of(policy, "policy").conditioning, conditions, args.allow_generic, "policy")
        check_can_generate(tokenizer, prompts, args.use_chat_template)
        if base is None and not hasattr(policy, "disable_adapter"):
            raise ValueError("--base_policy is required: the policy has no LoRA adapter to switch off.")
    except ValueError as e:
        parser.error(str(e))
    results = evaluate_policy(
        policy, tokenizer, judge, prompts, conditions, mode, base, base_tokenizer,
        template=args.condition_template, allow_generic=args.allow_generic,
        use_chat_template=args.use_chat_template, batch_size=args.generation_batch_size, seed=args.seed,
        progress=True, **args.generate_kwargs(),
    )  # fmt: skip
    results["arguments"] = {**asdict(args), **asdict(prompt_args)}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    print(format_policy_results(results, os.path.basename(os.path.normpath(args.policy))))
    if has_matplotlib():
        title = f"{os.path.basename(os.path.normpath(args.policy))} vs base, judge {os.path.basename(args.judge)}"
        plot_policy_matrix(results, os.path.join(args.output_dir, HEATMAP_FILE), title=title)
    else:
        print("matplotlib is not installed: no heatmap (pip install matplotlib).")
    print(f"Results written to {os.path.join(args.output_dir, RESULTS_FILE)}")
    return results


if __name__ == "__main__":
    main()
