"""A reply as the page's transports send it: HTML fragments, from any offset, to the end.

The WebSocket consumer and the SSE views both iterate `reply_updates`; they differ only in how
they frame what it yields. The finished message is rendered once per process for all of its
readers: from the reply as its job recorded it when the job ran here, else from the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chat.db import db_read
from chat.models import Message
from chat.replies.delivery import delta_text, reply_batches
from chat.replies.stream import StreamEntry
from chat.web.rendering import delta_fragment, final_fragment

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Update:
    seq: int
    html: str
    final: bool = False


# Renders under way, so that the readers of one reply that end together share one render (100
# readers, one render). Only while under way: a reply's readers come within its stream's
# retention, and the recorded reply they share keeps its rendering (below).
_rendering: dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Future[str]] = {}


def final_fragment_read(message_id: int) -> str:
    """The finished message's fragment, from the database."""
    return final_fragment(Message.objects.select_related("conversation").get(pk=message_id))


async def final_html(message_id: int, recorded: Message | None = None) -> str:
    """The finished message's fragment, rendered once for its readers in this process: from the
    reply as its job recorded it (kept on it), else from the database."""
    if recorded is not None and (html := getattr(recorded, "rendered_fragment", None)):
        return str(html)
    key = (asyncio.get_running_loop(), message_id)
    if (shared := _rendering.get(key)) is None:
        shared = asyncio.ensure_future(_render(message_id, recorded))
        _rendering[key] = shared
        shared.add_done_callback(functools.partial(_rendered, key))
    return await asyncio.shield(shared)


def _rendered(key: tuple[asyncio.AbstractEventLoop, int], done: asyncio.Future[str]) -> None:
    _rendering.pop(key, None)
    if not done.cancelled() and done.exception() is not None:
        # Its readers were told (they await it), or have gone: either way, it was looked at.
        logger.warning("Rendering the end of reply %s failed", key[1], exc_info=done.exception())


async def _render(message_id: int, recorded: Message | None) -> str:
    if recorded is None:
        return await db_read(final_fragment_read, message_id)
    html = await db_read(final_fragment, recorded)
    recorded.rendered_fragment = html  # type: ignore[attr-defined]
    return html


def _ending(entries: list[StreamEntry]) -> StreamEntry | None:
    return entries[-1] if entries and entries[-1].kind == "end" else None


async def reply_updates(
    message_id: int, *, after: int, idle_seconds: float = 5.0
) -> AsyncIterator[Update | None]:
    """Yield the reply after sequence number `after`: text fragments, then the finished message.
    Yields None after `idle_seconds` without news (the SSE view sends a ping then), having
    checked that the job is still alive."""
    async for entries in reply_batches(message_id, after=after, idle_seconds=idle_seconds):
        if entries is None:
            yield None
            continue
        if not entries:
            # Ended without an end marker we could see: the database has the ending.
            yield Update(after, await final_html(message_id), final=True)
            return
        if text := delta_text(entries):
            delta_seq = max(entry.seq for entry in entries if entry.kind == "delta")
            yield Update(delta_seq, delta_fragment(message_id, delta_seq, text))
        after = entries[-1].seq
        if (end := _ending(entries)) is not None:
            yield Update(after, await final_html(message_id, end.message), final=True)
            return
