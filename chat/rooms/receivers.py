"""Removal and the owner's presence switch take effect at once everywhere: the sharing signals
become a `room.removed` or `room.presence_switch` event for every worker's connections of the
room. Connected by `ChatConfig.ready()`."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings

from chat.conversations.signals import member_removed, presence_switched, sharing_stopped
from chat.rooms.events import members_removed
from chat.rooms.events import presence_switched as room_presence_switched

logger = logging.getLogger(__name__)

REMOVED_UID = "chat_rooms_member_removed"
STOPPED_UID = "chat_rooms_sharing_stopped"
SWITCHED_UID = "chat_rooms_presence_switched"


def connect() -> None:
    member_removed.connect(on_member_removed, dispatch_uid=REMOVED_UID)
    sharing_stopped.connect(on_sharing_stopped, dispatch_uid=STOPPED_UID)
    presence_switched.connect(on_presence_switched, dispatch_uid=SWITCHED_UID)


def _tell(conversation_id: Any, user_ids: list[int]) -> None:
    if not user_ids:
        return
    try:
        async_to_sync(members_removed)(conversation_id, user_ids)
    except Exception:
        # The removal itself is committed: every read checks membership again, so a reader that
        # was not told ends at its next check (a reply's stream, a reload). Say it loudly.
        logger.exception(
            "Telling the room of conversation %s about a removal failed", conversation_id
        )


def on_member_removed(sender: Any, conversation_id: Any, user_id: int, **kwargs: Any) -> None:
    _tell(conversation_id, [int(user_id)])


def on_sharing_stopped(
    sender: Any, conversation_id: Any, user_ids: list[int], **kwargs: Any
) -> None:
    _tell(conversation_id, [int(u) for u in user_ids])


def on_presence_switched(sender: Any, conversation_id: Any, enabled: bool, **kwargs: Any) -> None:
    if not settings.CHAT_PRESENCE:
        return  # off for the whole site: no page shows presence, and nothing is stored
    try:
        async_to_sync(room_presence_switched)(conversation_id, enabled=bool(enabled))
    except Exception:
        # The switch itself is committed, and new connections follow it. Each open connection
        # reads it again at its next heartbeat (chat/rooms/connection.py), so one that was not
        # told follows within HEARTBEAT_SECONDS. Say it loudly.
        logger.exception(
            "Telling the room of conversation %s that presence is %s failed",
            conversation_id,
            "on" if enabled else "off",
        )
