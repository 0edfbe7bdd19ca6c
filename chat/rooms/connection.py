"""One connection's part in a room (a WebSocket, or the SSE fallback's room stream): it joins
the group, says who is here, beats, relays typing, follows the owner's presence switch, and
leaves — with a debounced "left"."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings

from chat.conversations.reads import presence_enabled
from chat.db import db_read
from chat.rooms.events import (
    PRESENCE,
    PRESENCE_REFRESH,
    PRESENCE_SWITCH,
    TYPING,
    presence_event,
    presence_switch_event,
)
from chat.rooms.layer import REDIS_OUTAGE_ERRORS, get_layer, room_group, room_guarded, room_send
from chat.rooms.presence import (
    LEAVE_DEBOUNCE_SECONDS,
    Change,
    presence_drop,
    presence_join,
    presence_linger,
    presence_list,
    presence_sweep,
)

logger = logging.getLogger(__name__)

# A connection relays at most one `typing` per this many seconds (the page sends one per ~2 s
# while keys are pressed); more are dropped, not queued.
TYPING_MIN_INTERVAL = 1.0

# The debounced leave checks outlive their connection: kept here so none is garbage-collected.
_leave_checks: set[asyncio.Task[None]] = set()


class RoomConnection:
    def __init__(
        self,
        conversation_id: Any,
        *,
        user_id: int,
        name: str,
        channel: str,
        presence: bool,
    ) -> None:
        self.conversation_id = str(conversation_id)
        self.group = room_group(conversation_id)
        self.user_id = user_id
        self.name = name
        self.channel = channel
        self.presence = presence
        self.last_typing = 0.0

    async def enter(self) -> None:
        await get_layer().group_add(self.group, self.channel)
        if not self.presence:
            return
        change = await presence_join(
            self.group, user_id=self.user_id, name=self.name, connection=self.channel
        )
        if change.joined is not None:
            await room_send(self.conversation_id, presence_event(self.conversation_id, change))
        else:
            # Nothing changed for the others (a reconnect within the debounce, a second tab):
            # only this connection needs the list.
            await get_layer().send(self.channel, presence_event(self.conversation_id, change))

    async def beat(self) -> None:
        """Keep this connection's entry alive, and say "left" for entries that expired (a
        worker that died cannot say it for its own).

        It also reads the owner's switch: a connection that missed the room's event (the
        layer's Redis was unreachable as the owner switched) follows it here, as if the event
        had reached it — within one heartbeat."""
        if not settings.CHAT_PRESENCE:
            return
        enabled = await db_read(presence_enabled, self.conversation_id)
        if enabled != self.presence:
            await get_layer().send(
                self.channel, presence_switch_event(self.conversation_id, enabled=enabled)
            )
            return
        if not self.presence:
            return
        await presence_join(
            self.group, user_id=self.user_id, name=self.name, connection=self.channel
        )
        await announce_departures(self.conversation_id, self.group)

    async def switch(self, enabled: bool) -> bool:
        """Follow the owner's switch; whether this connection changed. Off: its entry goes at
        once (the store was cleared of the whole room too) and from now on it sends and stores
        nothing. On: it is here again — unannounced, as nobody came — and asks every page of the
        room to show who is here now (each reads the list as it hears that: the last to ask
        finds everyone, whatever order the asks arrive in)."""
        enabled = bool(enabled and settings.CHAT_PRESENCE)
        if enabled == self.presence:
            return False
        self.presence = enabled
        if enabled:
            await room_guarded(self._here_again(), doing="say who is here again")
        else:
            await room_guarded(
                presence_drop(
                    self.group, user_id=self.user_id, name=self.name, connection=self.channel
                ),
                doing="forget who is here",
            )
        return True

    async def _here_again(self) -> None:
        await presence_join(
            self.group, user_id=self.user_id, name=self.name, connection=self.channel
        )
        await room_send(
            self.conversation_id, {"type": PRESENCE_REFRESH, "conversation": self.conversation_id}
        )

    async def heard(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """What of a room event reaches this connection's page: the event, the list of who is
        here that it stands for, or nothing. Presence and typing only while presence is on
        (an event sent just before the owner switched it off is not shown after)."""
        if event.get("conversation") != self.conversation_id:
            return None
        kind = event.get("type")
        if kind in (PRESENCE, TYPING):
            return event if self.presence else None
        if kind == PRESENCE_SWITCH:
            return event if await self.switch(bool(event.get("enabled"))) else None
        if kind == PRESENCE_REFRESH:
            if not self.presence:
                return None
            try:
                people = await presence_list(self.group)
            except REDIS_OUTAGE_ERRORS as exc:
                logger.warning("The room could not read who is here (Redis unreachable: %s)", exc)
                return None
            return presence_event(self.conversation_id, Change(people))
        return event

    async def typing(self) -> bool:
        """Relay that this person is typing to the room (its pages skip the typist's own)."""
        now = time.monotonic()
        if not self.presence or now - self.last_typing < TYPING_MIN_INTERVAL:
            return False
        self.last_typing = now
        await room_send(
            self.conversation_id,
            {
                "type": TYPING,
                "conversation": self.conversation_id,
                "user_id": self.user_id,
                "name": self.name,
            },
        )
        return True

    async def leave(self) -> None:
        await get_layer().group_discard(self.group, self.channel)
        if not self.presence:
            return
        await presence_linger(
            self.group, user_id=self.user_id, name=self.name, connection=self.channel
        )
        task = asyncio.get_running_loop().create_task(
            _leave_check(self.conversation_id, self.group)
        )
        _leave_checks.add(task)
        task.add_done_callback(_leave_checks.discard)


async def announce_departures(conversation_id: str, group: str) -> Change | None:
    change = await presence_sweep(group)
    if change is not None:
        await room_send(conversation_id, presence_event(conversation_id, change))
    return change


async def _leave_check(conversation_id: str, group: str) -> None:
    try:
        await asyncio.sleep(LEAVE_DEBOUNCE_SECONDS + 0.2)
        await announce_departures(conversation_id, group)
    except Exception:
        logger.warning("A room's leave check failed", exc_info=True)


async def leave_checks_done() -> None:
    """Tests and shutdown: wait for the debounced leaves under way."""
    while _leave_checks:
        await asyncio.gather(*list(_leave_checks), return_exceptions=True)


async def who_is_here(conversation_id: Any) -> list[Any]:
    return await presence_list(room_group(conversation_id))


__all__ = ["PRESENCE", "RoomConnection", "announce_departures", "who_is_here"]
