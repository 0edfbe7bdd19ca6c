"""A reply as the page's transports send it: HTML fragments, from any offset, to the end.

The WebSocket consumer and the SSE views both iterate `reply_updates`; they differ only in how
they frame what it yields. The finished message is rendered once per process for all of its
readers: from the reply as its job recorded it when the job ran here, else from the database.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chat.db import db_read
from chat.models import Message
from chat.replies.delivery import delta_text, reply_batches
from chat.replies.stream import StreamEntry
from chat.web.rendering import delta_fragment, final_fragment


@dataclass(frozen=True, slots=True)
class Update:
    seq: int
    html: str
    final: bool = False


# The finished messages' fragments rendered lately, shared by their readers (100 readers of one
# reply render it once). Bounded: a reply's readers arrive within seconds of its end.
_FINALS_KEPT = 256
_finals: OrderedDict[int, asyncio.Future[str]] = OrderedDict()


def final_fragment_read(message_id: int) -> str:
    return final_fragment(Message.objects.select_related("conversation").get(pk=message_id))


async def final_html(message_id: int, recorded: Message | None = None) -> str:
    """The finished message's fragment, rendered once for every reader in this process."""
    shared = _finals.get(message_id)
    if shared is None or (shared.done() and shared.exception() is not None):
        shared = asyncio.get_running_loop().create_future()
        _finals[message_id] = shared
        while len(_finals) > _FINALS_KEPT:
            _finals.popitem(last=False)
        try:
            if recorded is not None:
                html = await db_read(final_fragment, recorded)
            else:
                html = await db_read(final_fragment_read, message_id)
        except BaseException as exc:
            shared.set_exception(exc)
            _finals.pop(message_id, None)
            raise
        shared.set_result(html)
    return await asyncio.shield(shared)


def final_html_forget(message_id: int) -> None:
    """The message changed after its end (a version switch, feedback): render it afresh."""
    _finals.pop(message_id, None)


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
            final_html_forget(message_id)
            yield Update(after, await final_html(message_id), final=True)
            return
        if text := delta_text(entries):
            delta_seq = max(entry.seq for entry in entries if entry.kind == "delta")
            yield Update(delta_seq, delta_fragment(message_id, delta_seq, text))
        after = entries[-1].seq
        if (end := _ending(entries)) is not None:
            yield Update(after, await final_html(message_id, end.message), final=True)
            return
