"""The room for connections that are not consumers: the SSE fallback's room stream and the
reply event streams of members, each on a fresh channel of the layer subscribed to the group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from chat.rooms.connection import RoomConnection
from chat.rooms.events import REMOVED
from chat.rooms.layer import get_layer, room_group, room_guarded
from chat.rooms.presence import HEARTBEAT_SECONDS

T = TypeVar("T")


async def room_listen(room: RoomConnection) -> AsyncIterator[dict[str, Any] | None]:
    """The room's events for one connection (its `channel` a fresh one of the layer), from
    entering to leaving, as the connection hears them (`RoomConnection.heard`: no presence or
    typing while the owner has it off); None each heartbeat without news (the stream pings
    then). Ends after a removal of this connection's person. While Redis is down the stream
    only pings: the layer's receive waits for it, and the room's writes are logged and
    skipped."""
    layer = get_layer()
    loop = asyncio.get_running_loop()
    await room_guarded(room.enter(), doing="take a connection in")
    # The beat is due on time however busy the room is (a room where someone is always typing
    # would otherwise never let it beat, and its entry would expire with the page open).
    next_beat = loop.time() + HEARTBEAT_SECONDS
    try:
        while True:
            event: dict[str, Any] | None = None
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(
                    layer.receive(room.channel), max(0.0, next_beat - loop.time())
                )
            if loop.time() >= next_beat:
                await room_guarded(room.beat(), doing="refresh who is here")
                next_beat = loop.time() + HEARTBEAT_SECONDS
            if event is None:
                yield None
                continue
            heard = await room.heard(event)
            if heard is not None:
                yield heard
            if event.get("type") == REMOVED and room.user_id in event.get("user_ids", []):
                return
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(room.leave())


async def _removal(conversation_id: Any, user_id: int) -> None:
    """Return once `user_id` is removed from the conversation."""
    layer = get_layer()
    group = room_group(conversation_id)
    channel = await layer.new_channel()
    # Redis unreachable: the reply's stream goes on (the layer adds the channel once it is back).
    await room_guarded(layer.group_add(group, channel), doing="watch for a removal")
    try:
        while True:
            event = await layer.receive(channel)
            if event.get("type") == REMOVED and user_id in event.get("user_ids", []):
                return
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(group, channel))


async def until_removed(
    events: AsyncIterator[T], *, conversation_id: Any, user_id: int
) -> AsyncIterator[T]:
    """`events` until they end or `user_id` is removed from the conversation, whichever comes
    first (a member's reply stream ends at once on removal, on whichever worker it runs)."""
    removed = asyncio.ensure_future(_removal(conversation_id, user_id))
    iterator = aiter(events)
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({following, removed}, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        removed.cancel()
        with contextlib.suppress(BaseException):
            await removed
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()
