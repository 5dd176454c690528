# Copyright 2026 The trl-custom authors. Licensed under the Apache License, Version 2.0.
"""
Dynamic batching for the reward server: requests that arrive within `max_wait_ms` of each other are scored in one
call of the scorer (one forward pass when they fit `max_batch_size`), and each request gets its own rewards back, in
its order. Requests are never split: one larger than `max_batch_size` is scored alone (in forward passes of
`max_batch_size`). While a batch is being scored the next requests queue up and form the next batch at once, so
batches grow with the load.

A batch whose scoring fails is scored again request by request, so one bad request fails alone and the others in
its batch get their rewards.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


ScoreFunction = Callable[[Sequence[Any] | None, Sequence[Any], Sequence[Any] | None], list[float]]
LATENCY_WINDOW = 10_000  # latencies kept for the percentiles
_STOP = object()  # queued by close(): score what came before, then stop


@dataclass
class _Job:
    prompts: list | None
    completions: list
    conditions: list | None
    future: Future = field(default_factory=Future)
    arrival: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.completions)


def _percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (nearest rank) of `values`, `None` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class ServingMetrics:
    """Counters of the reward server, thread-safe: requests, completions, batches and their sizes, latencies."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests = 0
        self.completions = 0
        self.errors: collections.Counter[int] = collections.Counter()
        self.batches = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # completions per scorer call
        self.requests_per_batch: collections.Counter[int] = collections.Counter()
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.score_seconds = 0.0

    def request_done(self, completions: int, seconds: float, status: int = 200) -> None:
        with self._lock:
            self.requests += 1
            if status == 200:
                self.completions += completions
                self.latencies.append(seconds)
            else:
                self.errors[status] += 1

    def batch_done(self, completions: int, requests: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.batch_sizes[completions] += 1
            self.requests_per_batch[requests] += 1
            self.score_seconds += seconds

    def snapshot(self, queued: int = 0) -> dict[str, Any]:
        """The `GET /metrics` answer."""
        with self._lock:
            latencies = [1000 * s for s in self.latencies]
            scored = sum(size * n for size, n in self.batch_sizes.items())
            return {
                "uptime_s": round(time.time() - self.started, 3),
                "requests": self.requests,
                "completions": self.completions,
                "errors": {str(status): n for status, n in sorted(self.errors.items())},
                "queued_requests": queued,
                "batches": self.batches,
                "batch_size": {
                    "mean": scored / self.batches if self.batches else None,
                    "max": max(self.batch_sizes, default=None),
                    "histogram": {str(size): n for size, n in sorted(self.batch_sizes.items())},
                },
                "requests_per_batch": {str(size): n for size, n in sorted(self.requests_per_batch.items())},
                "latency_ms": {
                    "count": len(latencies),
                    "mean": sum(latencies) / len(latencies) if latencies else None,
                    "p50": _percentile(latencies, 50),
                    "p90": _percentile(latencies, 90),
                    "p99": _percentile(latencies, 99),
                    "max": max(latencies, default=None),
                },
                "scoring_s": round(self.score_seconds, 3),
            }


class DynamicBatcher:
    """
    Merges the requests submitted within `max_wait_ms` of the first waiting one into one call of `score` (up to
    `max_batch_size` completions), in a thread of its own.

    Args:
        score (`callable`): `score(prompts, completions, conditions) -> rewards`, e.g. [`RewardScorer.score`].
        max_batch_size (`int`): Completions merged into one call at most (`1`: every request alone).
        max_wait_ms (`float`): How long the first waiting request waits for others (`0`: merge only what is queued).
        max_queued (`int`): Requests waiting at most; beyond, [`submit`] raises `queue.Full` (the server answers 503).
        metrics ([`ServingMetrics`], *optional*): Where batch sizes are counted.
    """

    def __init__(
        self,
        score: ScoreFunction,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queued: int = 1024,
        metrics: ServingMetrics | None = None,
    ):
        self.score = score
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.metrics = metrics or ServingMetrics()
        self.max_queued = max_queued
        self._queue: queue.Queue = queue.Queue()
        self._carried = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="reward-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, prompts: list | None, completions: list, conditions: list | None) -> Future:
        """Queue one request; its future resolves to its rewards (or the exception its scoring raised)."""
        if self._closed:
            raise RuntimeError("The reward server is shutting down.")
        if self._queue.qsize() >= self.max_queued:
            raise queue.Full(f"{self.max_queued} requests are waiting (--max_queued_requests)")
        job = _Job(prompts, completions, conditions)
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Score what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _next_batch(self) -> list[_Job] | None:
        first = self._carried if self._carried is not None else self._queue.get()
        self._carried = None
        if first is _STOP:
            return None
        batch, size = [first], len(first)
        deadline = first.arrival + self.max_wait
        while size < self.max_batch_size:
            try:
                wait = deadline - time.monotonic()
                job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or size + len(job) > self.max_batch_size:
                self._carried = job  # the next batch starts with it (or stops)
                break
            batch.append(job)
            size += len(job)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._score(batch)

    def _score(self, batch: list[_Job]) -> None:
        start = time.monotonic()
        try:
            rewards = self.score(
                [p for job in batch for p in (job.prompts or [None] * len(job))],
                [c for job in batch for c in job.completions],
                [c for job in batch for c in (job.conditions or [None] * len(job))],
            )
        except Exception as error:
            if len(batch) == 1:
                batch[0].future.set_exception(error)
            else:  # find the request that failed: the others get their rewards
                for job in batch:
                    self._score([job])
            return
        self.metrics.batch_done(len(rewards), len(batch), time.monotonic() - start)
        offset = 0
        for job in batch:
            job.future.set_result(rewards[offset : offset + len(job)])
            offset += len(job)
