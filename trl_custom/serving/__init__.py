# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
A conditioned reward model served over HTTP (`trl-custom serve-reward`), and its client.

In online RL the reward model competes with the policy for GPU memory; served elsewhere, the trainer's processes
only send text. The server (`server.py`: FastAPI + uvicorn, `pip install "trl-custom[serve]"`) scores with
[`RewardScorer`] and merges concurrent requests into one forward pass (`batcher.py`); the client (`client.py`, the
standard library only) scores like a local `RewardScorer`, and [`ConditionedRewardFunction.from_url`] makes it a
`reward_funcs` of GRPO/RLOO/Online DPO. The wire format (JSON, no pickle) and its checks are in `protocol.py`.
"""

from .batcher import DynamicBatcher, ServingMetrics
from .client import RemoteRewardError, RemoteRewardScorer
from .protocol import RequestError, RequestLimits, parse_score_request
from .serve_reward_config import ServeRewardConfig
from .server import RewardServer, load_scorer, make_app, serve


__all__ = [
    "DynamicBatcher",
    "RemoteRewardError",
    "RemoteRewardScorer",
    "RequestError",
    "RequestLimits",
    "RewardServer",
    "ServeRewardConfig",
    "ServingMetrics",
    "load_scorer",
    "make_app",
    "parse_score_request",
    "serve",
]
