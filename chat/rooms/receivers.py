"""Removal takes effect at once everywhere: the sharing signals become a `room.removed` event
for every worker's connections of the room. Connected by `ChatConfig.ready()`."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync

from chat.conversations.signals import member_removed, sharing_stopped
from chat.rooms.events import members_removed

logger = logging.getLogger(__name__)

REMOVED_UID = "chat_rooms_member_removed"
STOPPED_UID = "chat_rooms_sharing_stopped"


def connect() -> None:
    member_removed.connect(on_member_removed, dispatch_uid=REMOVED_UID)
    sharing_stopped.connect(on_sharing_stopped, dispatch_uid=STOPPED_UID)


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
