"""This worker process: its live jobs, its identity, its heartbeat, its sweeper, and draining.

`job_launch` runs a reply's generation (`generation.reply_generate`) as a task of this process
and keeps it in the registry of live jobs until it ends.

Every worker, from start-up (chatsite/serving/lifecycle.py starts it under Daphne; the first job
starts it elsewhere), beats every quarter of CHAT_WORKER_DEAD_AFTER_SECONDS: it marks its live
replies alive in the database (one UPDATE for all of them) and, with Redis, writes its id and their
ids under a key that expires after CHAT_WORKER_DEAD_AFTER_SECONDS. Each beat it also sweeps:
replies whose worker fell silent that long are ended as `interrupted` (chat/replies/reaper.py
`reply_reap_stale`, through the single writer), their text rebuilt from the shared stream and
their end marker written there, so readers on any worker get the ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.analytics.rollups import rollups_build
from chat.db import db_write
from chat.models import Message
from chat.replies.context import JobContext
from chat.replies.generation import reply_generate
from chat.replies.reaper import reply_reap_stale
from chat.replies.registry import job_track, live_jobs, live_reply_ids
from chat.replies.stream import SHARED_STREAM_ERRORS, RedisReplyStream, bounded
from chat.replies.stream import get_reply_stream as _get_reply_stream
from chat.telemetry import metrics
from chat.telemetry.log_context import log_context_bind

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

# --- The live jobs ---------------------------------------------------------------------------


def job_launch(message_id: int, context: JobContext | None = None) -> asyncio.Task[None]:
    """Run the reply's generation as a task of this process. `context`: what the send already
    knows (its history, its budget), so the job need not read it again."""
    worker_start()
    # A fresh context: the job must not inherit the launching request's (or consumer's)
    # thread-sensitive context, which ends long before the reply does.
    task = asyncio.get_running_loop().create_task(
        _job_run(message_id, context), name=f"reply-{message_id}", context=contextvars.Context()
    )
    job_track(message_id, task)
    metrics.live_reply_track(task)
    beat_soon()  # so other workers' reapers see at once that this reply lives here
    return task


async def _job_run(message_id: int, context: JobContext | None) -> None:
    log_context_bind(reply_id=message_id)
    await reply_generate(message_id, context)


async def jobs_interrupt(*, grace: float = 0.0, timeout: float = 10.0) -> None:
    """At shutdown: let live replies finish for `grace` seconds, then end the rest as
    `interrupted`, their text saved."""
    if grace > 0 and (jobs := live_jobs()):
        await asyncio.wait(jobs, timeout=grace)
    jobs = live_jobs()
    for job in jobs:
        job.cancel()
    if jobs:
        await asyncio.wait(jobs, timeout=timeout)


# --- The heartbeat and the sweeper -----------------------------------------------------------

_runner: asyncio.Task[None] | None = None
# Replies a reader found silent too long, with the readers waiting for the sweeper to look at
# them (`reap_soon`).
_reap_wanted: dict[int, list[asyncio.Future[None]]] = {}
_sweep_now: asyncio.Event | None = None
_draining = False
# The beat beat_soon started, held until done (the loop keeps only weak references), and whether
# another reply started since it read the live replies.
_extra_beat: asyncio.Task[None] | None = None
_extra_beat_wanted = False


def beat_seconds() -> float:
    return settings.CHAT_WORKER_DEAD_AFTER_SECONDS / 4


def worker_start() -> None:
    """Start this worker's heartbeat and sweeper (and its stop listener) on the running loop,
    once per process; later calls do nothing."""
    global _runner
    loop = asyncio.get_running_loop()
    if _runner is None or _runner.done() or _runner.get_loop() is not loop:
        _runner = loop.create_task(
            _beat_and_sweep_forever(), name="worker-heartbeat", context=contextvars.Context()
        )
        stream = _get_reply_stream()
        if isinstance(stream, RedisReplyStream):
            stream.start_listening()


def beat_soon() -> None:
    """List this worker's live replies in Redis now rather than at the next interval (a reply
    started here), so other workers see at once that it lives here. Only the shared key: the new
    reply's heartbeat was written with it, and the database beat of every live reply per start
    cost the writer a statement over all of them (O(N²) writes while N replies start). One beat
    at a time, covering every reply started before it read the list."""
    global _extra_beat, _extra_beat_wanted
    if not isinstance(_get_reply_stream(), RedisReplyStream):
        return  # one process: nobody else reaps
    _extra_beat_wanted = True
    if _extra_beat is None or _extra_beat.done():
        _extra_beat = asyncio.get_running_loop().create_task(
            _shared_beats(), name="worker-beat", context=contextvars.Context()
        )


async def _shared_beats() -> None:
    global _extra_beat_wanted
    while _extra_beat_wanted:
        _extra_beat_wanted = False
        try:
            await _beat_shared()
        except Exception:
            logger.exception("This worker's heartbeat failed")


def draining() -> bool:
    """True once this worker is shutting down: it takes no new replies."""
    return _draining


def drain_begin() -> None:
    global _draining
    _draining = True


def reap_soon(message_id: int) -> asyncio.Future[None]:
    """Ask this worker's sweeper to look at `message_id` now: a reader found it streaming with a
    heartbeat too old. Readers never write; the sweeper ends it through the writer if its worker
    is really gone. The future is done once the sweeper has looked."""
    worker_start()
    done = asyncio.get_running_loop().create_future()
    _reap_wanted.setdefault(message_id, []).append(done)
    if _sweep_now is not None:
        _sweep_now.set()
    return done


async def _beat_and_sweep_forever() -> None:
    global _sweep_now
    _sweep_now = sweep_now = asyncio.Event()
    sweeps = 0
    next_beat = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            if loop.time() >= next_beat:
                next_beat = loop.time() + beat_seconds()
                await beat_once()
                await db_write(reply_reap_stale)
                _get_reply_stream().forget_idle()
                sweeps += 1
                if sweeps % 60 == 1:
                    # Yesterday's analytics roll-up, once the day is over (a no-op until then).
                    await db_write(_rollup_yesterday)
            if _reap_wanted:
                await _reap_asked()
        except Exception:
            logger.exception("This worker's heartbeat or sweep failed")
        sweep_now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sweep_now.wait(), timeout=max(0.0, next_beat - loop.time()))


async def _reap_asked() -> None:
    wanted = dict(_reap_wanted)
    _reap_wanted.clear()
    try:
        await db_write(_reap_these, sorted(wanted))
    finally:
        for waiters in wanted.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def _reap_these(message_ids: list[int]) -> None:
    reply_reap_stale(message_ids=message_ids)


async def beat_once() -> None:
    live = live_reply_ids()
    await _beat_shared(live)
    if live:
        # With the reply path's other writes (chat/db/writer.py): on SQLite writers exclude
        # each other.
        await db_write(_beat_in_database, list(live))


async def _beat_shared(live: frozenset[int] | None = None) -> None:
    """This worker and its live replies, alive in the shared stream (Redis) for a while."""
    live = live_reply_ids() if live is None else live
    try:
        await bounded(
            _get_reply_stream().beat(WORKER_ID, live, ttl=settings.CHAT_WORKER_DEAD_AFTER_SECONDS),
            timeout=beat_seconds(),
        )
    except SHARED_STREAM_ERRORS:
        metrics.redis_error("worker_beat")
        logger.warning("Marking this worker alive in Redis failed", exc_info=True)


def _beat_in_database(message_ids: list[int]) -> None:
    # Only replies still live now: one that ended while this beat waited for a thread stays
    # ended (and its heartbeat is no longer ours to keep).
    message_ids = [i for i in message_ids if i in live_reply_ids()]
    if not message_ids:
        return
    Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(
        heartbeat_at=timezone.now()
    )


def _rollup_yesterday() -> None:
    rollups_build(days=[timezone.localdate() - timedelta(days=1)])
