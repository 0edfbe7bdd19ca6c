"""This worker process: its identity, its heartbeat, its sweeper, and draining at shutdown.

Every worker, from start-up (chatsite/serving/lifecycle.py starts it under Daphne; the first job
starts it elsewhere), beats every quarter of CHAT_WORKER_DEAD_AFTER_SECONDS: it marks its live
replies alive in the database (one UPDATE for all of them) and, with Redis, writes its id and their
ids under a key that expires after CHAT_WORKER_DEAD_AFTER_SECONDS. Each beat it also sweeps:
replies whose worker fell silent that long are ended as `interrupted` (chat/replies/jobs.py
`reply_reap_stale`), their text rebuilt from the shared stream and their end marker written there,
so readers on any worker get the ending.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import secrets
import socket
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.analytics.rollups import rollups_build
from chat.models import Message
from chat.replies.db_threads import db_call
from chat.replies.streams import SHARED_STREAM_ERRORS, RedisReplyStream, bounded
from chat.replies.streams import get_reply_stream as _get_reply_stream
from chat.replies.writer import writer_call
from chat.telemetry import metrics

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

_runner: asyncio.Task[None] | None = None
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


def drain_reset() -> None:
    """For tests: a worker that takes replies again."""
    global _draining
    _draining = False


async def _beat_and_sweep_forever() -> None:
    from chat.replies import jobs

    sweeps = 0
    while True:
        try:
            await beat_once()
            await db_call(jobs.reply_reap_stale)
            _get_reply_stream().forget_idle()
            sweeps += 1
            if sweeps % 60 == 1:
                # Yesterday's analytics roll-up, once the day is over (a no-op until then).
                await db_call(_rollup_yesterday)
        except Exception:
            logger.exception("This worker's heartbeat or sweep failed")
        await asyncio.sleep(beat_seconds())


async def beat_once() -> None:
    from chat.replies import jobs

    live = jobs.live_reply_ids()
    await _beat_shared(live)
    if live:
        # With the reply path's other writes (chat/replies/writer.py): on SQLite writers exclude
        # each other.
        await writer_call(_beat_in_database, list(live))


async def _beat_shared(live: frozenset[int] | None = None) -> None:
    """This worker and its live replies, alive in the shared stream (Redis) for a while."""
    from chat.replies import jobs

    live = jobs.live_reply_ids() if live is None else live
    try:
        await bounded(
            _get_reply_stream().beat(WORKER_ID, live, ttl=settings.CHAT_WORKER_DEAD_AFTER_SECONDS),
            timeout=beat_seconds(),
        )
    except SHARED_STREAM_ERRORS:
        metrics.redis_error("worker_beat")
        logger.warning("Marking this worker alive in Redis failed", exc_info=True)


def _beat_in_database(message_ids: list[int]) -> None:
    from chat.replies.jobs import live_reply_ids

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
