"""Reading a reply for a transport: coalesced HTML fragments, from any offset, to the end.

The WebSocket consumer and the SSE view both iterate `reply_updates`; they differ only in how
they frame what it yields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.template.loader import render_to_string

from chat.jobs import reply_reap_stale
from chat.models import Message
from chat.rendering import delta_fragment, message_fragment
from chat.streams import get_reply_stream


@dataclass(frozen=True, slots=True)
class Update:
    seq: int
    html: str
    final: bool = False


def _final_fragment(message_id: int) -> str:
    message = Message.objects.select_related("conversation").get(pk=message_id)
    totals = message.conversation.totals()
    return message_fragment(message) + render_to_string(
        "chat/partials/_totals.html", {"totals": totals, "oob": True}
    )


def _still_streaming(message_id: int) -> bool:
    reply_reap_stale(message_ids=[message_id])
    return Message.objects.filter(pk=message_id).streaming().exists()


_afinal_fragment = database_sync_to_async(_final_fragment)
_astill_streaming = database_sync_to_async(_still_streaming)


async def reply_updates(
    message_id: int, *, after: int, idle_seconds: float = 5.0
) -> AsyncIterator[Update | None]:
    """Yield the reply after sequence number `after`: text fragments coalesced over
    CHAT_COALESCE_MS, then the finished message. Yields None after `idle_seconds` without news
    (the SSE view sends a ping then), having checked that the job is still alive."""
    stream = get_reply_stream()
    window = settings.CHAT_COALESCE_MS / 1000
    if not await _astill_streaming(message_id):
        yield Update(after, await _afinal_fragment(message_id), final=True)
        return
    while True:
        entries = await stream.read(message_id, after=after, timeout=idle_seconds)
        if not entries:
            if not await _astill_streaming(message_id):
                # Ended without an end marker we could see: reaped, or the log expired.
                yield Update(after, await _afinal_fragment(message_id), final=True)
                return
            yield None
            continue
        if window and entries[-1].kind != "end":
            # Gather what else arrives in the window into the same fragment.
            await asyncio.sleep(window)
            entries += await stream.read(message_id, after=entries[-1].seq, timeout=0)
        text = "".join(entry.text for entry in entries if entry.kind == "delta")
        last = entries[-1]
        if text:
            delta_seq = max(entry.seq for entry in entries if entry.kind == "delta")
            yield Update(delta_seq, delta_fragment(message_id, delta_seq, text))
        after = last.seq
        if last.kind == "end":
            yield Update(last.seq, await _afinal_fragment(message_id), final=True)
            return
