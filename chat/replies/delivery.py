"""Reading a reply for a transport: coalesced HTML fragments, from any offset, to the end.

The WebSocket consumer and the SSE view both iterate `reply_updates`; they differ only in how
they frame what it yields.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from chat.models import Message
from chat.replies.db_threads import db_call
from chat.replies.jobs import live_reply_ids, reply_reap_stale
from chat.replies.streams import SHARED_STREAM_ERRORS, StreamEntry, get_reply_stream
from chat.web.rendering import delta_fragment, final_fragment

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Update:
    seq: int
    html: str
    final: bool = False


def _final_fragment(message_id: int) -> str:
    return final_fragment(Message.objects.select_related("conversation").get(pk=message_id))


def _still_streaming(message_id: int) -> bool:
    reply_reap_stale(message_ids=[message_id])
    return Message.objects.filter(pk=message_id).streaming().exists()


async def _afinal_fragment(message_id: int) -> str:
    return await db_call(_final_fragment, message_id)


async def _astill_streaming(message_id: int) -> bool:
    if message_id in live_reply_ids():
        # This process's job is generating it, so it is alive: no database read. (Its ending is
        # published before the job leaves the set, and read from the database after.)
        return True
    return await db_call(_still_streaming, message_id)


async def _batches(
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
    model speeds and still send them one by one.) With Redis the job already publishes a
    window's deltas as one entry, so what one read returns is a fragment.

    However long the reply is silent, this waits (each read is bounded well inside its socket's
    timeout, chat/replies/redis_options.py); if the shared stream fails, it reads the database
    until the stream is back or the reply has ended, so a reader always gets the ending."""
    stream = get_reply_stream()
    window = 0.0 if stream.coalesces_on_write else settings.CHAT_COALESCE_MS / 1000
    loop = asyncio.get_running_loop()
    if not await _astill_streaming(message_id):
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
            if not await _astill_streaming(message_id):
                # Ended without an end marker we could see: reaped, Redis failed, or the log
                # expired. The database has the ending and all the text.
                yield []
                return
            if not failures:
                yield None
            continue
        # Inside the window since the last send: gather until it has passed, unless the end
        # arrives first (it, and what came before it, go out at once).
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


def _delta_text(entries: list[StreamEntry]) -> str:
    return "".join(entry.text for entry in entries if entry.kind == "delta")


async def reply_updates(
    message_id: int, *, after: int, idle_seconds: float = 5.0
) -> AsyncIterator[Update | None]:
    """Yield the reply after sequence number `after`: text fragments, then the finished message.
    Yields None after `idle_seconds` without news (the SSE view sends a ping then), having
    checked that the job is still alive."""
    async for entries in _batches(message_id, after=after, idle_seconds=idle_seconds):
        if entries is None:
            yield None
            continue
        if not entries:
            yield Update(after, await _afinal_fragment(message_id), final=True)
            return
        if text := _delta_text(entries):
            delta_seq = max(entry.seq for entry in entries if entry.kind == "delta")
            yield Update(delta_seq, delta_fragment(message_id, delta_seq, text))
        after = entries[-1].seq
        if entries[-1].kind == "end":
            # The job rendered the finished message once, for every reader; a reader of a
            # reply ended elsewhere (the reaper) renders it from the database.
            html = entries[-1].html or await _afinal_fragment(message_id)
            yield Update(after, html, final=True)
            return


@dataclass(frozen=True, slots=True)
class TextUpdate:
    text: str  # what was written since the previous update
    final: bool = False  # the reply has ended; its row in the database has its ending


def _saved_content(message_id: int) -> str:
    return Message.objects.values_list("content", flat=True).get(pk=message_id)


async def _asaved_content(message_id: int) -> str:
    return await db_call(_saved_content, message_id)


async def reply_text_updates(
    message_id: int, *, idle_seconds: float = 5.0
) -> AsyncIterator[TextUpdate | None]:
    """The reply from its start as raw text, for transports that send text rather than HTML
    (the OpenAI-compatible API): the same coalesced batches as `reply_updates`, then a final
    update. None after `idle_seconds` without news."""
    sent = 0
    async for entries in _batches(message_id, after=0, idle_seconds=idle_seconds):
        if entries is None:
            yield None
            continue
        if not entries:
            # The saved text is the whole reply: send what the stream did not show us.
            yield TextUpdate((await _asaved_content(message_id))[sent:], final=True)
            return
        text = _delta_text(entries)
        sent += len(text)
        final = entries[-1].kind == "end"
        if text or final:
            yield TextUpdate(text, final=final)
