# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""A conditioned reward model as a `reward_funcs` callable for TRL's online trainers (GRPO, RLOO, Online DPO).

TRL feeds a model-type reward (`reward_funcs=model`) only prompt + completion text, so a domain- or user-conditioned
reward model would score every user alike. As a *function* reward it also receives the dataset's other columns, and
the condition travels with each completion.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from accelerate import PartialState
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..conditioned_rm.scoring import RewardScorer, load_reward_model
from ..soft_tokens import GENERIC, ConditioningSpec, is_missing


logger = logging.getLogger(__name__)

NORMALIZATIONS = (None, "batch", "running")
MAX_CONDITIONS_WITH_METRICS = 20


class ConditionedRewardFunction:
    """
    Wraps a trained conditioned reward model (text, soft tokens or both, see [`CustomRewardTrainer`]) as a reward
    function for TRL's [`~trl.GRPOTrainer`], [`~trl.RLOOTrainer`] and
    [`~trl.experimental.online_dpo.OnlineDPOTrainer`].

    Those trainers call `reward_func(prompts=..., completions=..., completion_ids=..., **columns)`, where `columns`
    holds every other column of the training dataset, one value per completion (GRPO and RLOO repeat each row for
    its `num_generations` completions, Online DPO for its two completions). This callable reads the condition of
    each completion from its column (the model's `condition_column` by default: `domain`, `user_id`, ...) and scores
    `(prompt, completion, condition)` with [`RewardScorer`], exactly as the model was trained (same template or soft
    tokens, same EOS handling and truncation), in batches of `batch_size`. Prompts and completions may be standard
    text or conversational messages. Missing/`None` values and (unless the model is strict) unknown ones get the
    generic condition.

    Not an `nn.Module`, on purpose: TRL would otherwise call it as a plain sequence classifier, without the condition.
    It is therefore not prepared by the trainer either (no DeepSpeed/FSDP sharding): each process keeps a full copy
    of the reward model, where it is or on `device` — or none with [`~ConditionedRewardFunction.from_url`], which
    sends the texts to the model served by `trl-custom serve-reward` elsewhere (same rewards, same checks).

    Args:
        model ([`~transformers.PreTrainedModel`]):
            The reward model, e.g. from [`load_reward_model`] (with its condition table in embedding mode).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The reward model's tokenizer (not necessarily the policy's).
        spec ([`ConditioningSpec`], *optional*):
            How the model is conditioned; defaults to the model's record (`model.trl_custom_record`).
        condition_column (`str`, *optional*):
            Dataset column holding the condition; defaults to the column the model was trained on (`spec.column`).
        device (`str` or `torch.device`, *optional*):
            Where to score. `None` (default) keeps the model where it is; a device moves it there now; `"auto"` moves
            it, at the first call, to the device of the current training process (`accelerate.PartialState().device`,
            i.e. the trainer's device, one per process in multi-GPU runs).
        normalize (`str`, *optional*):
            - `None` (default): raw rewards.
            - `"batch"`: `(r - mean) / (std + eps)` over the completions of each call (one generation batch of this
              process). GRPO/RLOO already normalize advantages per prompt group, so this mostly sets the scale of
              this reward against other `reward_funcs`.
            - `"running"`: `(r - mean) / (std + eps)` with the mean and standard deviation of every reward this
              object has computed so far (this call included), kept per process; see `running_mean`/`running_std`
              and [`reset_statistics`].
        eps (`float`, *optional*, defaults to `1e-6`): Added to the standard deviation when normalizing.
        batch_size (`int`, *optional*, defaults to `16`): Sequences per reward-model forward pass.
        max_length (`int`, *optional*): Longer sequences are cut as in training; defaults to the training
            `max_length` saved with the model (see [`RewardScorer`]).
        name (`str`, *optional*, defaults to `"conditioned_reward"`):
            The function's `__name__`: TRL logs `rewards/<name>/mean`. Per-condition means of the raw reward are
            logged as `<name>/<condition>` (GRPO and RLOO, up to 20 conditions).
        strict_conditions (`bool`, *optional*):
            Overrides the model's saved `strict_conditions`: `True` makes a condition value not seen in training an
            error naming it (instead of the generic condition, logged once per value, e.g. for a typo in the column).

    Example:

    ```python
    >>> from trl import GRPOConfig, GRPOTrainer
    >>> from trl_custom import ConditionedRewardFunction

    >>> reward = ConditionedRewardFunction.from_pretrained("outputs/dsp-rm", device="auto")
    >>> # train_dataset: a "prompt" column and the model's condition column ("domain")
    >>> trainer = GRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=reward, train_dataset=dataset)
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: ConditioningSpec | None = None,
        condition_column: str | None = None,
        device: str | torch.device | None = None,
        normalize: str | None = None,
        eps: float = 1e-6,
        batch_size: int = 16,
        max_length: int | None = None,
        name: str = "conditioned_reward",
        strict_conditions: bool | None = None,
    ):
        scorer = RewardScorer(model, tokenizer, spec, max_length=max_length, batch_size=batch_size)
        if strict_conditions is not None:
            scorer.conditioning = dataclasses.replace(scorer.conditioning, strict=strict_conditions)
        self._setup(scorer, condition_column, normalize, eps, name)
        self._auto_device = device == "auto"
        if device is not None and not self._auto_device:
            model.to(device)

    def _setup(self, scorer, condition_column: str | None, normalize: str | None, eps: float, name: str) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize={normalize!r}: choose one of {NORMALIZATIONS}.")
        self.scorer = scorer
        self.condition_column = condition_column or scorer.conditioning.column
        self.normalize = normalize
        self.eps = eps
        self.__name__ = name
        self._auto_device = False
        self._warned_unknown: set[str] = set()
        self.reset_statistics()

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs: Any
    ) -> ConditionedRewardFunction:
        """Load a reward model saved by [`CustomRewardTrainer`] or [`save_reward_model`] with [`load_reward_model`]
        (LoRA adapter, condition table, vocabulary); `kwargs` go to the constructor."""
        model, tokenizer, spec = load_reward_model(path, tokenizer=tokenizer)
        return cls(model, tokenizer, spec, **kwargs)

    @classmethod
    def from_url(
        cls,
        url: str,
        condition_column: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        batch_size: int = 64,
        normalize: str | None = None,
        eps: float = 1e-6,
        name: str = "conditioned_reward",
    ) -> ConditionedRewardFunction:
        """
        The reward model served by `trl-custom serve-reward` at `url` as a reward function: the same contract,
        checks, per-condition metrics and normalization as a local one, the rewards computed by the server (no
        model in this process). Its conditioning (mode, column, known conditions) is read from the server when built.

        Args:
            url (`str`): The server, e.g. `"http://127.0.0.1:8001"`.
            condition_column, normalize, eps, name: As in the constructor.
            api_key (`str`, *optional*): The server's `--api_key`; defaults to `$TRL_CUSTOM_API_KEY`.
            timeout (`float`, *optional*, defaults to `60.0`): Seconds to wait for each request's answer.
            max_retries (`int`, *optional*, defaults to `3`): Retries of a request that failed in a way a retry can
                fix (connection refused or reset, timeout, HTTP 408/429/5xx), with exponential backoff from
                `retry_backoff` seconds; then [`~trl_custom.serving.RemoteRewardError`] names the server and each
                failure (a training step never gets a made-up reward).
            batch_size (`int`, *optional*, defaults to `64`): Completions per request.

        Example:

        ```python
        >>> # on the reward machine: trl-custom serve-reward --model_name_or_path outputs/dsp-rm --port 8001
        >>> reward = ConditionedRewardFunction.from_url("http://127.0.0.1:8001")
        >>> trainer = GRPOTrainer(model=policy, reward_funcs=reward, train_dataset=dataset)  # "domain" column
        ```
        """
        from ..serving.client import RemoteRewardScorer

        scorer = RemoteRewardScorer(
            url, api_key=api_key, timeout=timeout, max_retries=max_retries, retry_backoff=retry_backoff,
            batch_size=batch_size,
        )  # fmt: skip
        reward = cls.__new__(cls)
        reward._setup(scorer, condition_column, normalize, eps, name)
        return reward

    @property
    def conditioning(self) -> ConditioningSpec:
        return self.scorer.conditioning

    @property
    def model(self) -> PreTrainedModel:
        return self.scorer.model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.scorer.tokenizer

    def reset_statistics(self) -> None:
        """Forget the running mean and standard deviation (`normalize="running"`)."""
        self.count = 0
        self.running_mean = 0.0
        self._sum_squares = 0.0  # sum of squared deviations from the running mean (Chan et al. parallel update)

    @property
    def running_std(self) -> float:
        return math.sqrt(self._sum_squares / self.count) if self.count else 0.0

    def __call__(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """
        Rewards of `completions` to `prompts` under each completion's condition, read from
        `kwargs[condition_column]`. Other keyword arguments (other columns, `trainer_state`, ...) are ignored.
        """
        conditions = self._conditions(kwargs, len(completions))
        if self._auto_device:
            self.model.to(PartialState().device)
            self._auto_device = False
        rewards = self.scorer.score(prompts, completions, conditions)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and conditions is not None:
            self._log_per_condition(log_metric, rewards, conditions)
        return self._normalized(rewards)

    def _conditions(self, columns: dict[str, Any], num_completions: int) -> list[Any] | None:
        if self.conditioning.mode == "none":
            return None
        if self.condition_column not in columns:
            available = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))
            raise ValueError(
                f"The reward function {self.__name__!r} needs the '{self.condition_column}' column, but the trainer "
                f"passed only the columns {available}. Its reward model is conditioned "
                f"({self.conditioning.mode} mode) on "
                f"'{self.condition_column}': add that column to the training dataset (GRPOTrainer, RLOOTrainer and "
                "OnlineDPOTrainer pass every dataset column to reward functions; keep `remove_unused_columns=False`), "
                "or pass `condition_column=` naming the column that holds the domain/user."
            )
        values = list(columns[self.condition_column])
        if len(values) != num_completions:
            raise ValueError(
                f"The '{self.condition_column}' column has {len(values)} values for {num_completions} completions: "
                "pass one condition per completion."
            )
        spec = self.conditioning
        unknown = [v for v in spec.unknown_values(values) if v not in self._warned_unknown]
        if unknown and not spec.strict:  # (strict: the scorer raises, naming them)
            self._warned_unknown.update(unknown)
            logger.warning(
                f"Reward function {self.__name__!r}: {self.condition_column} value(s) {unknown} were not seen in "
                f"training (known: {list(spec.conditions)[:20]}); each is {spec.how_unknown_is_scored()}. A typo? "
                "Fix the column, or pass strict_conditions=True to make this an error. (Logged once per value.)"
            )
        return values

    def _log_per_condition(self, log_metric, rewards: list[float], conditions: list[Any]) -> None:
        if len(self.conditioning.conditions) > MAX_CONDITIONS_WITH_METRICS:
            return
        names = self.conditioning.names
        groups: dict[str, list[float]] = {}
        for reward, condition in zip(rewards, conditions, strict=True):
            name = GENERIC if is_missing(condition) else names[self.conditioning.condition_id(condition)]
            groups.setdefault(name, []).append(reward)
        for name, values in groups.items():
            log_metric(f"{self.__name__}/{name}", sum(values) / len(values))

    def _normalized(self, rewards: list[float]) -> list[float]:
        if self.normalize is None or not rewards:
            return rewards
        values = torch.tensor(rewards, dtype=torch.float64)
        if self.normalize == "batch":
            mean, std = values.mean().item(), values.std(unbiased=False).item()
        else:
            self._update_statistics(values)
            mean, std = self.running_mean, self.running_std
        return ((values - mean) / (std + self.eps)).tolist()

    def _update_statistics(self, values: torch.Tensor) -> None:
        n, mean = values.numel(), values.mean().item()
        delta = mean - self.running_mean
        total = self.count + n
        self._sum_squares += ((values - mean) ** 2).sum().item() + delta**2 * self.count * n / total
        self.running_mean += delta * n / total
        self.count = total
