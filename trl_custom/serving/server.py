# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
The reward server: a conditioned reward model behind HTTP (FastAPI + uvicorn, the stack of TRL's `trl vllm-serve`),
for online-RL workers that should not hold the reward model themselves (see [`ConditionedRewardFunction.from_url`]).

Endpoints (JSON only, see `trl_custom.serving.protocol`):

- `POST /score`: `{"prompts", "completions", "conditions"}` -> `{"rewards"}`, dynamically batched
  ([`DynamicBatcher`]); a bad request gets a 4xx with its message and the server keeps serving;
- `GET /info`: the model's record (conditioning mode, column, known conditions, `max_length`, ...) and the limits;
- `GET /metrics`: requests, completions, errors by status, batch sizes, latency percentiles;
- `GET /health`: `{"status": "ok"}` (the only endpoint open without the API key).

FastAPI and uvicorn come with `pip install "trl-custom[serve]"`; this module imports them when a server is built.
"""

import asyncio
import hmac
import json
import logging
import queue
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from .batcher import DynamicBatcher, ServingMetrics
from .protocol import HEALTH_PATH, INFO_PATH, METRICS_PATH, SCORE_PATH, RequestError, parse_score_request
from .serve_reward_config import ServeRewardConfig


logger = logging.getLogger(__name__)
INSTALL_HINT = 'The reward server needs FastAPI and uvicorn: pip install "trl-custom[serve]"'


def _web_stack():
    try:
        import fastapi
        import uvicorn
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e}).") from e
    return fastapi, uvicorn


def load_scorer(config: ServeRewardConfig):
    """The [`RewardScorer`] of `config.model_name_or_path` (LoRA adapter, record and soft tokens restored) on
    `config.device` in `config.dtype`, scoring `config.max_batch_size` completions per forward pass."""
    import torch

    from ..conditioned_rm.scoring import RewardScorer, load_reward_model

    model_kwargs = (
        {}
        if config.dtype is None
        else {"dtype": config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)}
    )
    model, tokenizer, conditioning = load_reward_model(config.model_name_or_path, **model_kwargs)
    if config.device is not None:
        model.to(config.device)
    return RewardScorer(model, tokenizer, conditioning, max_length=config.max_length, batch_size=config.max_batch_size)


async def _read_body(request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it passes `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(
            413, f"The request has {declared} bytes; this server takes at most {max_bytes} (--max_request_bytes)."
        )
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise RequestError(413, f"The request has more than {max_bytes} bytes (--max_request_bytes).")
    return bytes(body)


def make_app(scorer, config: ServeRewardConfig):
    """
    The FastAPI application serving `scorer` ([`RewardScorer`], or anything with its `score(prompts, completions,
    conditions)`, `conditioning` and `record`) with the limits, batching and API key of `config`. The scorer is used
    from one thread only (the batcher's); its `batch_size` is raised to `config.max_batch_size` so that a merged
    batch is one forward pass.
    """
    fastapi, _ = _web_stack()
    from fastapi.responses import JSONResponse, Response

    from .. import __version__

    Request = fastapi.Request  # evaluated here: FastAPI reads the annotation to pass the request

    scorer.batch_size = max(getattr(scorer, "batch_size", 1), config.max_batch_size)
    metrics = ServingMetrics()
    batcher = DynamicBatcher(
        scorer.score, config.max_batch_size, config.max_wait_ms, config.max_queued_requests, metrics
    )
    limits = config.limits
    expected_header = f"Bearer {config.api_key}".encode() if config.api_key is not None else None

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    # no /docs, /redoc or /openapi.json: nothing is served but the four endpoints
    app = fastapi.FastAPI(
        title="trl-custom reward server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.batcher, app.state.metrics, app.state.scorer = batcher, metrics, scorer

    def error(status: int, message: str, start: float | None = None) -> Any:
        metrics.request_done(0, 0.0 if start is None else time.monotonic() - start, status)
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def authenticate(request, call_next):
        if expected_header is not None and request.url.path != HEALTH_PATH:
            if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected_header):
                return error(
                    401,
                    "Missing or wrong API key: send the header 'Authorization: Bearer <key>' with the server's "
                    "--api_key (ConditionedRewardFunction.from_url(..., api_key=...) or $TRL_CUSTOM_API_KEY).",
                )
        return await call_next(request)

    @app.get(HEALTH_PATH)
    async def health():
        if not batcher.alive:
            return JSONResponse({"status": "stopped"}, status_code=503)
        return {"status": "ok"}

    @app.get(INFO_PATH)
    async def info():
        record = {**scorer.record.to_dict(), "conditioning": scorer.conditioning.to_dict()}
        return {
            "model": config.model_name_or_path,
            "record": record,
            "max_length": scorer.max_length,
            "max_batch_size": config.max_batch_size,
            "max_wait_ms": config.max_wait_ms,
            "limits": asdict(limits),
            "trl_custom_version": __version__,
        }

    @app.get(METRICS_PATH)
    async def get_metrics():
        return metrics.snapshot(batcher.queued)

    @app.post(SCORE_PATH)
    async def score(request: Request):
        start = time.monotonic()
        try:
            body = await _read_body(request, limits.max_bytes)
            prompts, completions, conditions = parse_score_request(body, limits, scorer.conditioning)
            rewards = []
            if completions:
                try:
                    future = batcher.submit(prompts, completions, conditions)
                except queue.Full as e:
                    raise RequestError(503, f"The server is busy: {e}; retry later.") from None
                except RuntimeError as e:
                    raise RequestError(503, str(e)) from None
                rewards = await asyncio.wrap_future(future)
        except RequestError as e:
            return error(e.status, e.message, start)
        except (ValueError, TypeError, KeyError) as e:  # the model's tokenizer refused this request's input
            return error(422, f"The reward model cannot score this request: {type(e).__name__}: {e}", start)
        except Exception as e:
            logger.exception("Scoring failed")
            return error(500, f"Scoring failed on the server: {type(e).__name__}: {e}", start)
        metrics.request_done(len(completions), time.monotonic() - start)
        return Response(json.dumps({"rewards": rewards}), media_type="application/json")

    return app


class RewardServer:
    """
    The reward server in a background thread of this process (tests, benchmarks, notebooks); `trl-custom
    serve-reward` runs the same application in the foreground.

    Args:
        scorer ([`RewardScorer`]): The model to serve.
        config ([`ServeRewardConfig`]): Where and how (`port=0` picks a free port, see `url`).

    Example:

    ```python
    >>> server = RewardServer.from_pretrained("outputs/dsp-rm", port=0)  # or RewardServer(scorer, config)
    >>> with server:
    ...     reward = ConditionedRewardFunction.from_url(server.url)
    ```
    """

    def __init__(self, scorer, config: ServeRewardConfig):
        _, uvicorn = _web_stack()
        self.config = config
        self.app = make_app(scorer, config)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=config.host, port=config.port, log_level=config.log_level, access_log=False)
        )
        self._thread: threading.Thread | None = None

    @classmethod
    def from_pretrained(cls, path: str, **config_kwargs: Any) -> "RewardServer":
        config = ServeRewardConfig(path, **config_kwargs)
        return cls(load_scorer(config), config)

    def start(self, timeout: float = 60.0) -> "RewardServer":
        """Bind and serve; returns once the server answers (or raises with the reason it did not start)."""
        self._thread = threading.Thread(target=self._server.run, name="reward-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(
                    f"The reward server did not start on {self.config.host}:{self.config.port} (port in use? see the "
                    "log above)."
                )
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (requests in flight are answered first) and free the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "RewardServer":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config: ServeRewardConfig) -> None:
    """Load the model of `config` and serve it in the foreground until interrupted (`trl-custom serve-reward`)."""
    _, uvicorn = _web_stack()
    scorer = load_scorer(config)
    app = make_app(scorer, config)
    spec = scorer.conditioning
    conditioned = (
        "not conditioned"
        if spec.mode == "none"
        else f"{spec.mode} mode on '{spec.column}', {len(spec.conditions)} conditions"
    )
    print(
        f"Serving the reward model {config.model_name_or_path} ({conditioned}) on http://{config.host}:{config.port}"
        f" ({'API key required' if config.api_key else 'no API key'}): POST {SCORE_PATH}, GET {INFO_PATH} "
        f"{METRICS_PATH} {HEALTH_PATH}; batches of up to {config.max_batch_size} completions within "
        f"{config.max_wait_ms} ms.",
        flush=True,
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=config.log_level in ("debug", "trace"),
    )
