"""Reading a reply for a transport: coalesced batches of its log, from any offset, to the end.

Readers never write. The page's transports (the WebSocket consumer, the SSE views) render what
`reply_batches` yields as HTML (chat/web/updates.py); the API reads `reply_text_updates`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.db import db_read
from chat.models import Message
from chat.replies.registry import live_reply_ids
from chat.replies.stream import SHARED_STREAM_ERRORS, StreamEntry, get_reply_stream
from chat.replies.workers import reap_soon

logger = logging.getLogger(__name__)

# How long a reader waits for the sweeper to look at a reply that seems abandoned.
REAP_WAIT_SECONDS = 5.0


def reply_liveness(message_id: int) -> tuple[bool, bool]:
    """Whether the reply is still streaming, and whether its heartbeat is too old for a live
    worker (its worker may be gone)."""
    row = Message.objects.filter(pk=message_id).values_list("status", "heartbeat_at").first()
    if row is None or row[0] != Message.Status.STREAMING:
        return False, False
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_WORKER_DEAD_AFTER_SECONDS)
    return True, row[1] is None or row[1] <= cutoff


async def still_streaming(message_id: int) -> bool:
    """Whether the reply is still being written. A reply that looks abandoned is handed to the
    sweeper (`workers.reap_soon`), and read again once it has looked: readers never write."""
    if message_id in live_reply_ids():
        # This process's job is generating it, so it is alive: no database read. (Its ending is
        # published before the job leaves the set, and read from the database after.)
        return True
    streaming, stale = await db_read(reply_liveness, message_id)
    if stale:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reap_soon(message_id)), REAP_WAIT_SECONDS)
        streaming, _stale = await db_read(reply_liveness, message_id)
    return streaming


async def reply_batches(
    message_id: int, *, after: int, idle_seconds: float
) -> AsyncIterator[list[StreamEntry] | None]:
    """The reply's stream entries after `after`, in coalesced batches; the last ends with the end
    marker. None after `idle_seconds` without news, having checked that the job is still alive.
    An empty batch, last, when the reply ended without an end marker we could see (it ended
    before we came, was reaped, or its log expired): the database has the rest.

    Coalescing is leading-edge: a delta goes out at once when nothing was sent in the last
    CHAT_COALESCE_MS, and what arrives inside that window waits only until the window since the
    last send has passed, merged into one batch. The end goes out at once. (A trailing window,
    which sleeps after every first delta, would add the whole window to every token at ordinary
    model speeds and still send them one by one.) With Redis, readers on the worker that runs
    the reply read it in memory like that; elsewhere the job already publishes a window's deltas
    as one entry, so what one read returns is a fragment.

    However long the reply is silent, this waits (each read is bounded well inside its socket's
    timeout, chat/replies/redis_options.py); if the shared stream fails, it reads the database
    until the stream is back or the reply has ended, so a reader always gets the ending."""
    stream = get_reply_stream()
    coalesce = settings.CHAT_COALESCE_MS / 1000
    loop = asyncio.get_running_loop()
    if not await still_streaming(message_id):
        yield []
        return
    last_sent = -math.inf
    failures = 0
    while True:
        try:
            entries = await stream.read(message_id, after=after, timeout=idle_seconds)
            failures = 0
        except SHARED_STREAM_ERRORS:
            failures += 1
            if failures == 1:
                logger.warning("Reading reply %s failed; retrying", message_id, exc_info=True)
            await asyncio.sleep(min(2.0, 0.1 * 2**failures))
            entries = []
        if not entries:
            if not await still_streaming(message_id):
                # Ended without an end marker we could see: reaped, Redis failed, or the log
                # expired. The database has the ending and all the text.
                yield []
                return
            if not failures:
                yield None
            continue
        # Inside the window since the last send: gather until it has passed, unless the end
        # arrives first (it, and what came before it, go out at once).
        window = 0.0 if stream.gathers_on_write(message_id) else coalesce
        while entries[-1].kind != "end" and (wait := last_sent + window - loop.time()) > 0:
            try:
                entries += await stream.read(message_id, after=entries[-1].seq, timeout=wait)
            except SHARED_STREAM_ERRORS:
                break  # send what we have; the next read handles the failure
        yield entries
        if any(entry.kind == "delta" for entry in entries):
            last_sent = loop.time()
        if entries[-1].kind == "end":
            return
        after = entries[-1].seq


def delta_text(entries: list[StreamEntry]) -> str:
    return "".join(entry.text for entry in entries if entry.kind == "delta")


@dataclass(frozen=True, slots=True)
class TextUpdate:
    text: str  # what was written since the previous update
    final: bool = False  # the reply has ended; its row in the database has its ending


def _saved_content(message_id: int) -> str:
    return Message.objects.values_list("content", flat=True).get(pk=message_id)


async def _asaved_content(message_id: int) -> str:
    return await db_read(_saved_content, message_id)


async def reply_text_updates(
    message_id: int, *, idle_seconds: float = 5.0
) -> AsyncIterator[TextUpdate | None]:
    """The reply from its start as raw text, for transports that send text rather than HTML
    (the OpenAI-compatible API): the same coalesced batches as `reply_updates`, then a final
    update. None after `idle_seconds` without news."""
    sent = 0
    async for entries in reply_batches(message_id, after=0, idle_seconds=idle_seconds):
        if entries is None:
            yield None
            continue
        if not entries:
            # The saved text is the whole reply: send what the stream did not show us.
            yield TextUpdate((await _asaved_content(message_id))[sent:], final=True)
            return
        text = delta_text(entries)
        sent += len(text)
        final = entries[-1].kind == "end"
        if text or final:
            yield TextUpdate(text, final=final)


async def reply_wait(message_id: int, *, timeout: float) -> None:
    """Wait until the reply ends (the no-JavaScript form posts and shows the finished reply)."""
    stream = get_reply_stream()
    after = 0
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            entries = await stream.read(message_id, after=after, timeout=min(remaining, 5.0))
        except SHARED_STREAM_ERRORS:
            # Redis is down: the database tells when the reply (which ends itself) is over.
            await asyncio.sleep(0.5)
            entries = []
        if entries:
            if entries[-1].kind == "end":
                return
            after = entries[-1].seq
        elif not (await db_read(reply_liveness, message_id))[0]:
            return
