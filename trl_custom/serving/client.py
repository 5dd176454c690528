# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The client of `trl-custom serve-reward`: [`RemoteRewardScorer`] scores like a local [`RewardScorer`] (same
`score(prompts, responses, conditions)`, `conditioning`, `record`), over HTTP with the standard library only.
[`ConditionedRewardFunction.from_url`] wraps it as `reward_funcs` of GRPO/RLOO/Online DPO.

Calls are sent in requests of `batch_size` completions; each request has a `timeout` and is retried `max_retries`
times with exponential backoff on what a retry can fix (connection refused or reset, timeout, HTTP 408/429/5xx). A
call that still fails raises [`RemoteRewardError`] naming the server, the endpoint and each failure; a refused
request (HTTP 4xx) raises at once with the server's message. No reward is ever made up.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from ..record import ModelRecord
from ..soft_tokens.spec import ConditioningSpec
from .protocol import API_KEY_ENV, HEALTH_PATH, INFO_PATH, METRICS_PATH, SCORE_PATH, error_message
from .serve_reward_config import is_loopback


RETRIED_STATUSES = (408, 429, 500, 502, 503, 504)
MAX_BACKOFF_S = 30.0


class RemoteRewardError(RuntimeError):
    """A reward server did not answer a request, or refused it: the message names the server and what failed."""


def _reason(error: BaseException, timeout: float) -> str:
    """What went wrong with one attempt, in words."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within the timeout of {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing listens there: is `trl-custom serve-reward` running?)"
    if isinstance(error, (ConnectionResetError, http.client.RemoteDisconnected, ConnectionAbortedError)):
        return "the server closed the connection"
    if isinstance(error, socket.gaierror):
        return f"the host name does not resolve ({error})"
    return f"{type(error).__name__}: {error}"


class RemoteRewardScorer:
    """
    Scores `(prompt, response, condition)` with a reward model served by `trl-custom serve-reward` at `url`, with the
    interface of [`RewardScorer`]: the rewards are the server's `RewardScorer.score` rewards (same model, same
    inputs: identical to scoring locally, up to float rounding across batch compositions).

    Args:
        url (`str`): The server, e.g. `"http://127.0.0.1:8001"`.
        api_key (`str`, *optional*): Sent as `Authorization: Bearer <api_key>`; defaults to `$TRL_CUSTOM_API_KEY`.
        timeout (`float`, *optional*, defaults to `60.0`): Seconds to wait for each request's answer.
        max_retries (`int`, *optional*, defaults to `3`): Retries of a failed request (connection refused or reset,
            timeout, HTTP 408/429/5xx), after `retry_backoff * 2**attempt` seconds (at most 30).
        retry_backoff (`float`, *optional*, defaults to `1.0`): The first wait between attempts.
        batch_size (`int`, *optional*, defaults to `64`): Completions per request.

    The model's record (conditioning mode, column, known conditions, `max_length`) is read from the server's
    `GET /info` when built, so that a wrong URL or key fails here, not at the first training step.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        batch_size: int = 64,
    ):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url={url!r}: give the reward server's address, e.g. 'http://127.0.0.1:8001'.")
        if timeout <= 0 or max_retries < 0 or batch_size < 1 or retry_backoff < 0:
            raise ValueError(
                f"timeout={timeout}, max_retries={max_retries}, retry_backoff={retry_backoff}, "
                f"batch_size={batch_size}: need timeout > 0, max_retries >= 0, retry_backoff >= 0 and batch_size >= 1."
            )
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.batch_size = batch_size
        # a proxy of the environment never stands between this machine and its own loopback server
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)
        self.info = self._request("GET", INFO_PATH)
        self.record = ModelRecord(**{k: v for k, v in self.info["record"].items() if k != "version"})
        self.conditioning: ConditioningSpec = self.record.conditioning
        self.max_length = self.info.get("max_length")

    def __repr__(self) -> str:
        return f"RemoteRewardScorer({self.url!r}, model={self.info.get('model')!r})"

    @property
    def model(self):
        raise AttributeError(
            f"The reward model is served by {self.url}, not held in this process: load it with "
            "RewardScorer.from_pretrained to fit or inspect it."
        )

    def health(self) -> dict[str, Any]:
        return self._request("GET", HEALTH_PATH)

    def metrics(self) -> dict[str, Any]:
        """The server's counters: requests, completions, errors, batch sizes, latency percentiles."""
        return self._request("GET", METRICS_PATH)

    def score(
        self,
        prompts: Sequence[Any] | None,
        responses: Sequence[Any],
        conditions: Sequence[Any] | None = None,
        progress: bool = False,
        desc: str = "Scoring",
    ) -> list[float]:
        """Rewards of `responses` to `prompts` under `conditions`, as [`RewardScorer.score`], in requests of
        `batch_size` completions (sent one after another, answered in order)."""
        n = len(responses)
        if prompts is not None and len(prompts) != n or conditions is not None and len(conditions) != n:
            raise ValueError(
                f"Got {n if prompts is None else len(prompts)} prompts, {n} responses and "
                f"{n if conditions is None else len(conditions)} conditions."
            )
        rewards: list[float] = []
        for start in range(0, n, self.batch_size):
            end = min(start + self.batch_size, n)
            payload = {"completions": list(responses[start:end])}
            if prompts is not None:
                payload["prompts"] = list(prompts[start:end])
            if conditions is not None:
                payload["conditions"] = [_json_condition(c) for c in conditions[start:end]]
            answer = self._request("POST", SCORE_PATH, payload)
            got = answer.get("rewards") if isinstance(answer, dict) else None
            if not isinstance(got, list) or len(got) != end - start or not all(_is_number(r) for r in got):
                raise RemoteRewardError(
                    f"Reward server {self.url}: POST {SCORE_PATH} answered {str(answer)[:200]} for {end - start} "
                    "completions; expected {'rewards': [one number per completion]}."
                )
            rewards.extend(float(r) for r in got)
        return rewards

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        failures = []
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF_S))
            request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                message = error_message(e.read())
                if e.code not in RETRIED_STATUSES:
                    raise RemoteRewardError(
                        f"Reward server {self.url}: {method} {path} was refused with HTTP {e.code}: {message}"
                    ) from None
                failures.append(f"HTTP {e.code}: {message}")
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                failures.append(_reason(e, self.timeout))
        attempts = "\n".join(f"  attempt {i + 1}: {reason}" for i, reason in enumerate(failures))
        raise RemoteRewardError(
            f"Reward server {self.url}: {method} {path} failed {len(failures)} times (max_retries={self.max_retries}, "
            f"timeout={self.timeout:g} s):\n{attempts}\nCheck that `trl-custom serve-reward` runs there and is "
            "reachable from this machine; no reward was returned."
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_condition(value: Any) -> Any:
    """A condition value as JSON carries it (numpy/torch scalars -> Python numbers; other objects -> str)."""
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
