"""Prometheus metrics: what a streaming chat needs watched. Served at /metrics
(chatsite/ops/probes.py) to a scraper holding CHAT_METRICS_TOKEN.

Several workers: each Daphne process counts in its own memory, so a scrape that reaches one
worker through the proxy would see only that worker. With PROMETHEUS_MULTIPROC_DIR set (the
production recipe, scripts/run_prod.py, sets it and empties it at start) prometheus-client keeps
every process's values in files there, and whichever worker answers /metrics sums them all:
counters and histograms over every worker that ever ran, gauges over the workers alive now
(`livesum`). Without it (`make run`, the tests) the process's own registry is served.

The hooks below are one call each at the point where the thing happens, so the code they live
in stays about its own work.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from redis.exceptions import RedisError

P = ParamSpec("P")
T = TypeVar("T")

LIVE_REPLIES = Gauge(
    "chat_live_replies",
    "Replies being generated now (generation jobs running).",
    multiprocess_mode="livesum",
)
READERS = Gauge(
    "chat_readers",
    "Connections following a reply now, by transport (ws, sse, api).",
    ["transport"],
    multiprocess_mode="livesum",
)
TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds",
    "Seconds from the start of a reply's job to its first text (observed when the reply ends).",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60),
)
OUTPUT_TOKENS = Counter(
    "chat_output_tokens",
    "Output tokens of ended replies (as the provider reported them, else estimated).",
    ["provider"],
)
REPLIES_ENDED = Counter(
    "chat_replies_ended",
    "Replies ended, by ended_reason (completed, stopped, provider_error, timeout, ...).",
    ["reason"],
)
REDIS_ERRORS = Counter(
    "chat_redis_errors",
    "Failed calls to chatsite's Redis, by operation.",
    ["operation"],
)


def live_reply_track(job: asyncio.Task[Any]) -> None:
    """Count a generation job as live until its task is done, however it ends."""
    LIVE_REPLIES.inc()
    job.add_done_callback(lambda _task: LIVE_REPLIES.dec())


def first_token(provider: str, seconds: float) -> None:
    TIME_TO_FIRST_TOKEN.labels(provider).observe(seconds)


def reply_ended(*, provider: str, reason: str, output_tokens: int) -> None:
    REPLIES_ENDED.labels(reason).inc()
    OUTPUT_TOKENS.labels(provider).inc(output_tokens)


def redis_error(operation: str) -> None:
    REDIS_ERRORS.labels(operation).inc()


def counts_redis_errors(
    operation: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate an async Redis call: count its failures (and let them propagate)."""

    def decorate(call: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(call)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await call(*args, **kwargs)
            except (RedisError, OSError):
                redis_error(operation)
                raise

        return counted

    return decorate


async def reading(transport: str, updates: AsyncIterator[T]) -> AsyncIterator[T]:
    """Pass a reader's updates through, counting the reader while it follows the reply."""
    gauge = READERS.labels(transport)
    gauge.inc()
    try:
        async for update in updates:
            yield update
    finally:
        gauge.dec()
        aclose = getattr(updates, "aclose", None)
        if aclose is not None:
            await aclose()


def metrics_render() -> tuple[bytes, str]:
    """The exposition text: every worker's values in multi-process mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
