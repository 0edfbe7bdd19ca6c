"""The room's events as they travel through the channel layer: plain dicts (channels-redis
serialises them with msgpack), each `type` naming the consumer method that receives it."""

from __future__ import annotations

import uuid
from typing import Any

from chat.rooms.layer import room_group, room_send
from chat.rooms.presence import Change, presence_clear, present_as_lists

PRESENCE = "room.presence"
TYPING = "room.typing"
REPLY = "room.reply"
REMOVED = "room.removed"
# The owner turned who-is-here and typing off or on.
PRESENCE_SWITCH = "room.presence_switch"
# "Show who is here now": each connection reads the list from the store as it hears this (sent
# by each connection as presence comes back on, after it is here again).
PRESENCE_REFRESH = "room.presence_refresh"


def presence_event(conversation_id: Any, change: Change) -> dict[str, Any]:
    return {
        "type": PRESENCE,
        # Each process renders a change once for all its connections of the room (the layer
        # hands each its own copy of the event).
        "id": uuid.uuid4().hex,
        "conversation": str(conversation_id),
        "present": present_as_lists(change.present),
        "joined": change.joined.name if change.joined else "",
        "left": [person.name for person in change.left or []],
    }


async def reply_started(
    conversation_id: Any,
    *,
    assistant_id: int,
    user_message_id: int | None,
    branch_changed: bool,
    origin: str,
) -> None:
    """A member's send (or Regenerate, or Edit) started a reply: every other page of the room
    shows the new bubbles and follows the reply from its stream. `origin` is the connection that
    sent it, which has both already."""
    await room_send(
        conversation_id,
        {
            "type": REPLY,
            "conversation": str(conversation_id),
            "assistant_id": assistant_id,
            "user_message_id": user_message_id,
            "branch_changed": branch_changed,
            "origin": origin,
        },
    )


async def members_removed(conversation_id: Any, user_ids: list[int]) -> None:
    """Their sockets are told and closed, their event streams of the conversation end."""
    await room_send(
        conversation_id,
        {"type": REMOVED, "conversation": str(conversation_id), "user_ids": list(user_ids)},
    )


def presence_switch_event(conversation_id: Any, *, enabled: bool) -> dict[str, Any]:
    return {"type": PRESENCE_SWITCH, "conversation": str(conversation_id), "enabled": enabled}


async def presence_switched(conversation_id: Any, *, enabled: bool) -> None:
    """The owner turned presence off or on: every connection of the room is told (and follows
    it, chat/rooms/connection.py). Off, the store forgets everyone here at once — connections
    of every worker, and entries a dead worker left behind."""
    try:
        await room_send(conversation_id, presence_switch_event(conversation_id, enabled=enabled))
    finally:
        if not enabled:
            await presence_clear(room_group(conversation_id))
