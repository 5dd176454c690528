# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""The settings of `trl-custom serve-reward` (also [`RewardServer`]'s), checked when built."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from .protocol import API_KEY_ENV, RequestLimits


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DTYPES = ("auto", "bfloat16", "float16", "float32")


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (`localhost`, `127.x.x.x`, `::1`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: reachable from elsewhere, as far as we know
        return False


@dataclass
class ServeRewardConfig:
    r"""
    Settings of the reward server (`trl-custom serve-reward`): what it serves, where, and what it accepts.

    Args:
        model_name_or_path (`str`):
            A reward model folder that [`RewardScorer.from_pretrained`] loads: saved by [`CustomRewardTrainer`] or
            [`save_reward_model`] (text or embedding conditioning, full weights or a LoRA adapter), a `checkpoint-N`,
            or any sequence-classification reward model.
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Address to bind. Any other than this machine's loopback needs `api_key`, or `allow_unauthenticated=True`.
        port (`int`, *optional*, defaults to `8001`):
            Port (`0`: any free one). `trl vllm-serve` takes 8000 by default, so both fit on one machine.
        api_key (`str`, *optional*):
            Clients must send `Authorization: Bearer <api_key>` (all endpoints but `/health`). Defaults to the
            `TRL_CUSTOM_API_KEY` environment variable (which keeps it out of the process list).
        allow_unauthenticated (`bool`, *optional*, defaults to `False`):
            Serve on a non-loopback `host` without an API key (only inside a network you trust).
        max_batch_size (`int`, *optional*, defaults to `64`):
            Completions scored in one forward pass at most; requests are merged up to it (`1`: no batching).
        max_wait_ms (`float`, *optional*, defaults to `5.0`):
            How long a request waits for others to share its forward pass.
        device (`str`, *optional*):
            Where the model runs (`"cuda:1"`, `"cpu"`); by default where it loads (the CPU).
        dtype (`str`, *optional*):
            Weights' dtype (`"bfloat16"`, `"float16"`, `"float32"`); by default the checkpoint's loading default.
        max_length (`int`, *optional*):
            Tokens per sequence; by default the training `max_length` saved with the model.
        max_request_items (`int`, *optional*, defaults to `1024`): Completions per request at most (else 413).
        max_item_chars (`int`, *optional*, defaults to `100000`): Characters per prompt or completion (else 413).
        max_request_bytes (`int`, *optional*, defaults to `16777216`): Bytes per request body (else 413).
        max_queued_requests (`int`, *optional*, defaults to `1024`): Requests waiting at most (else 503: retry).
        log_level (`str`, *optional*, defaults to `"info"`): uvicorn's log level.
    """

    model_name_or_path: str = field(metadata={"help": "Reward model folder (RewardScorer.from_pretrained loads it)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind; non-loopback needs --api_key."})
    port: int = field(default=8001, metadata={"help": "Port to bind (0: any free port)."})
    api_key: str | None = field(
        default=None, metadata={"help": f"Required 'Authorization: Bearer KEY' header (default: ${API_KEY_ENV})."}
    )
    allow_unauthenticated: bool = field(
        default=False, metadata={"help": "Serve on a non-loopback host without an API key."}
    )
    max_batch_size: int = field(default=64, metadata={"help": "Completions per forward pass (1: no batching)."})
    max_wait_ms: float = field(default=5.0, metadata={"help": "How long a request waits to share a forward pass."})
    device: str | None = field(default=None, metadata={"help": "Device of the model (cuda:0, cpu)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights' dtype (bfloat16, float16, float32)."})
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per sequence (default: the training max_length)."}
    )
    max_request_items: int = field(default=1024, metadata={"help": "Completions per request at most."})
    max_item_chars: int = field(default=100_000, metadata={"help": "Characters per prompt/completion at most."})
    max_request_bytes: int = field(default=16 * 1024 * 1024, metadata={"help": "Bytes per request body at most."})
    max_queued_requests: int = field(default=1024, metadata={"help": "Requests waiting at most (then 503)."})
    log_level: str = field(default="info", metadata={"help": f"uvicorn's log level: {', '.join(LOG_LEVELS)}."})

    def __post_init__(self):
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if not is_loopback(self.host) and self.api_key is None and not self.allow_unauthenticated:
            raise ValueError(
                f"--host {self.host} serves the reward model beyond this machine, so it needs an API key: pass "
                f"--api_key KEY (or set {API_KEY_ENV}; clients send 'Authorization: Bearer KEY'), or "
                "--allow_unauthenticated true inside a network you trust, or keep --host 127.0.0.1."
            )
        for name in ("max_batch_size", "max_request_items", "max_item_chars", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_queued_requests < 1:
            raise ValueError(f"--max_queued_requests must be >= 1, got {self.max_queued_requests}.")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ValueError(f"--max_wait_ms must be between 0 and 10000, got {self.max_wait_ms}.")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r}: choose one of {DTYPES}.")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"--log_level {self.log_level!r}: choose one of {LOG_LEVELS}.")

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(self.max_request_items, self.max_item_chars, self.max_request_bytes)
