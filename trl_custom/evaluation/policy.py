# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Evaluating a personalized policy with a judge reward model: for held-out prompts, the policy generates under each
condition (domain, user) and the base policy generates once; a conditioned judge scores every generation under every
condition, in one batched call. Per condition, the win rate of the policy's generations over the base policy's
under that condition's judge; and the generation-condition x judge-condition matrix of win rates (and of mean
rewards), the policy-side twin of a reward model's heatmap ([`plot_policy_matrix`]).

The judge should not be the reward model that labelled the policy's training pairs (a conditioned reward model
trained on other prompts, or another backbone): a policy optimized against a judge is flattered by it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from ..conditioned_rm.encoding import apply_text_condition
from ..labelling.generation import generate_completions
from ..labelling.labelling import check_conditions, reward_scores
from ..soft_tokens import ConditioningSpec, get_soft_tokens
from ..soft_tokens.spec import DEFAULT_TEMPLATE
from .report import plot_heatmap


POLICY_CONDITION_MODES = ("auto", "embedding", "text", "none")
BASE = "base policy"


def render_condition_prompt(prompt: str | list[dict], condition: Any, template: str = DEFAULT_TEMPLATE):
    """
    The condition written into the prompt, as a TRL user does by hand and as a text-mode reward model renders it:
    `template` before a text prompt, or as the system message of a conversation.
    """
    return apply_text_condition(ConditioningSpec(mode="text", template=template), condition, prompt, [])[0]


def resolve_policy_mode(model, mode: str) -> str:
    """`"auto"`: `"embedding"` for a policy with soft tokens (P-DPO), else `"none"` (one generation for all)."""
    if mode not in POLICY_CONDITION_MODES:
        raise ValueError(f"condition_mode={mode!r}: choose one of {POLICY_CONDITION_MODES}.")
    if mode == "auto":
        return "embedding" if get_soft_tokens(model) is not None else "none"
    if mode == "embedding" and get_soft_tokens(model) is None:
        raise ValueError(
            "condition_mode='embedding' needs a policy with soft tokens (trained by PersonalizedDPOTrainer); use "
            "'text' (the condition written into the prompt) or 'none'."
        )
    return mode


def policy_generations(
    model,
    tokenizer,
    prompts: Sequence[Any],
    conditions: Sequence[str],
    mode: str = "auto",
    template: str = DEFAULT_TEMPLATE,
    use_chat_template: bool = False,
    batch_size: int = 16,
    seed: int | None = 0,
    progress: bool = False,
    **generate_kwargs: Any,
) -> dict[str, list[str]]:
    """
    One completion of each prompt under each condition, `{condition: [completion per prompt]}`: under the
    condition's soft tokens (`"embedding"`), with the condition written into the prompt (`"text"`, see
    [`render_condition_prompt`], before `use_chat_template` makes a text prompt a user message), or one generation
    shared by every condition (`"none"`).
    """
    mode = resolve_policy_mode(model, mode)
    common = dict(batch_size=batch_size, seed=seed, progress=progress, desc=f"Generating ({mode})", **generate_kwargs)
    common["use_chat_template"] = use_chat_template
    if mode == "none":
        texts = [g[0] for g in generate_completions(model, tokenizer, list(prompts), **common)]
        return {str(c): texts for c in conditions}
    every = [(c, p) for c in conditions for p in prompts]
    if mode == "embedding":
        outputs = generate_completions(
            model, tokenizer, [p for _, p in every], conditions=[c for c, _ in every], **common
        )
    else:  # rendered into the prompt as given: a text prompt read as a user message keeps it in that message
        rendered = [render_condition_prompt(p, c, template) for c, p in every]
        outputs = generate_completions(model, tokenizer, rendered, **common)
    n = len(prompts)
    return {str(c): [g[0] for g in outputs[k * n : (k + 1) * n]] for k, c in enumerate(conditions)}


def base_generations(model, tokenizer, prompts, base_policy=None, base_tokenizer=None, **kwargs) -> list[str]:
    """
    The base policy's completions (no condition): `base_policy`, or for a LoRA policy the policy with its adapter
    off. `kwargs` as for [`policy_generations`].
    """
    if base_policy is None and not hasattr(model, "disable_adapter"):
        raise ValueError("Give the base policy (`base_policy`): this policy has no LoRA adapter to switch off.")
    base = base_policy if base_policy is not None else model
    off = model.disable_adapter() if base_policy is None else contextlib.nullcontext()
    with off:
        texts = policy_generations(base, base_tokenizer or tokenizer, prompts, [BASE], mode="none", **kwargs)
    return texts[BASE]


def judge_generations(
    judge,
    prompts: Sequence[Any],
    generations: dict[str, list[str]],
    base: Sequence[str],
    judge_conditions: Sequence[str] | None = None,
    allow_generic: bool = False,
    tie_tolerance: float = 1e-6,
) -> dict[str, Any]:
    """
    Score every generation and the base policy's under every condition of `judge_conditions` (default: the rows of
    `generations`) with `judge` ([`RewardScorer`] or [`ConditionedRewardFunction`]) in one call, the judge reading the
    original prompt. A generation wins against the base policy's for the same prompt when its reward is higher; a
    tie counts half: the same completion as the base policy's (whatever the rewards: the same text scored in other
    batches can differ by a few 1e-6), or rewards within `tie_tolerance`.

    Returns:
        `dict`: `win_rate` (per condition, under its own judge: the diagonal), `matrix` (rows: generation condition,
        columns: judge condition, values: win rates), `mean_reward` (the same layout) and `base_mean_reward` (per
        judge condition), `diagonal_mean`, `off_diagonal_mean` and `diagonal_minus_off_diagonal` (of the win rates).
    """
    rows_names = list(generations)
    columns = [str(c) for c in (judge_conditions or rows_names)]
    check_conditions(judge.conditioning, columns, allow_generic, what="judge")
    n = len(prompts)
    for name, texts in generations.items():
        if len(texts) != n:
            raise ValueError(f"Generations {name!r} have {len(texts)} completions for {n} prompts.")
    if len(base) != n:
        raise ValueError(f"The base policy has {len(base)} completions for {n} prompts.")
    sources = [generations[name] for name in rows_names] + [list(base)]
    every = [(s, j, i) for s in range(len(sources)) for j in columns for i in range(n)]
    rewards = reward_scores(
        judge, [prompts[i] for _, _, i in every], [sources[s][i] for s, _, i in every], [j for _, j, _ in every]
    )
    reward = {key[:2]: [] for key in every}
    for (s, j, _), value in zip(every, rewards, strict=True):
        reward[(s, j)].append(value)
    base_index = len(sources) - 1

    def outcome(a: float, b: float, text: Any, base_text: Any) -> float:
        return 0.5 if text == base_text or abs(a - b) <= tie_tolerance else float(a > b)

    def win(s: int, j: str) -> float:
        pairs = zip(reward[(s, j)], reward[(base_index, j)], sources[s], sources[base_index], strict=True)
        return sum(outcome(*pair) for pair in pairs) / n

    wins = [[win(s, j) for j in columns] for s in range(len(rows_names))]
    means = [[sum(reward[(s, j)]) / n for j in columns] for s in range(len(rows_names))]
    diagonal = [wins[r][columns.index(name)] for r, name in enumerate(rows_names) if name in columns]
    off = [wins[r][c] for r, name in enumerate(rows_names) for c, col in enumerate(columns) if col != name]
    diagonal_mean = sum(diagonal) / len(diagonal) if diagonal else None
    off_mean = sum(off) / len(off) if off else None
    return {
        "prompts": n,
        "win_rate": {name: wins[r][columns.index(name)] for r, name in enumerate(rows_names) if name in columns},
        "matrix": {"rows": rows_names, "columns": columns, "values": wins},
        "mean_reward": {"rows": rows_names, "columns": columns, "values": means},
        "base_mean_reward": {j: sum(reward[(base_index, j)]) / n for j in columns},
        "diagonal_mean": diagonal_mean,
        "off_diagonal_mean": off_mean,
        "diagonal_minus_off_diagonal": None if None in (diagonal_mean, off_mean) else diagonal_mean - off_mean,
    }


def evaluate_policy(
    model,
    tokenizer,
    judge,
    prompts: Sequence[Any],
    conditions: Sequence[str] | None = None,
    condition_mode: str = "auto",
    base_policy=None,
    base_tokenizer=None,
    template: str = DEFAULT_TEMPLATE,
    allow_generic: bool = False,
    **generation: Any,
) -> dict[str, Any]:
    """
    Evaluate a personalized policy against its base policy with a judge ([`judge_generations`]): the policy generates
    under each condition (`condition_mode`, see [`policy_generations`]), the base policy once ([`base_generations`]).
    `conditions` default to the judge's. `generation`: `use_chat_template`, `batch_size`, `seed`, `progress` and
    `model.generate`'s keyword arguments.

    Returns:
        `dict`: [`judge_generations`]'s results, with `condition_mode` and the `generations` (`"base policy"` and one
        list per condition).
    """
    conditions = [str(c) for c in (conditions or judge.conditioning.conditions)]
    check_conditions(judge.conditioning, conditions, allow_generic, what="judge")  # before generating anything
    mode = resolve_policy_mode(model, condition_mode)
    if mode == "embedding":
        from ..record import ModelRecord

        check_conditions(ModelRecord.of(model, kind="policy").conditioning, conditions, allow_generic, "policy")
    generations = policy_generations(model, tokenizer, prompts, conditions, mode, template, **generation)
    base = base_generations(model, tokenizer, prompts, base_policy, base_tokenizer, **generation)
    results = judge_generations(judge, prompts, generations, base, conditions, allow_generic)
    return {"condition_mode": mode, **results, "generations": {BASE: base, **generations}}


def plot_policy_matrix(results: dict[str, Any], path: str | os.PathLike, title: str | None = None):
    """Save the win-rate matrix of [`evaluate_policy`] as a heatmap (rows: generated under, columns: judged under)."""
    return plot_heatmap(
        results["matrix"],
        path,
        title=title,
        xlabel="judged under (judge's condition)",
        ylabel="generated under",
        value_label="win rate over the base policy",
    )


def format_policy_results(results: dict[str, Any], label: str = "policy") -> str:
    """The win rates per condition and the matrix as a text table."""
    matrix = results["matrix"]
    width = max(10, *(len(c) + 2 for c in matrix["columns"]))
    lines = [f"Win rate of the {label} over the base policy ({results['prompts']} prompts; rows: generated under, "
             "columns: judged under)"]  # fmt: skip
    lines.append(" " * 18 + "".join(f"{c:>{width}}" for c in matrix["columns"]))
    for name, values in zip(matrix["rows"], matrix["values"], strict=True):
        lines.append(f"  {name:<16}" + "".join(f"{v:>{width}.3f}" for v in values))
    if results.get("diagonal_minus_off_diagonal") is not None:
        lines.append(
            f"  diagonal {results['diagonal_mean']:.3f}, off-diagonal {results['off_diagonal_mean']:.3f}: "
            f"{100 * results['diagonal_minus_off_diagonal']:+.1f} points"
        )
    return "\n".join(lines)
