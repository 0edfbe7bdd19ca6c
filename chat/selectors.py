"""Reads: who may see what, and the data pages and transports render."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.http import Http404

from chat.models import Conversation, Message


@dataclass(frozen=True, slots=True)
class Visitor:
    """Whoever is on the other end: a signed-in user, or an anonymous session's visitor id."""

    user: Any
    visitor_id: str
    # Where they connect from (past trusted proxies); limits count by it. Empty when unknown.
    client_ip: str = ""

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)

    @property
    def key(self) -> str:
        return f"user:{self.user.pk}" if self.is_authenticated else f"visitor:{self.visitor_id}"


def conversations_for(visitor: Visitor) -> Any:
    return Conversation.objects.owned_by(user=visitor.user, visitor_id=visitor.visitor_id)


def conversation_get(visitor: Visitor, conversation_id: Any) -> Conversation:
    """The visitor's conversation, or Http404 — the same answer whether it does not exist or
    belongs to someone else, so ids cannot be probed."""
    try:
        return conversations_for(visitor).get(pk=uuid.UUID(str(conversation_id)))
    except (ValueError, Conversation.DoesNotExist):
        raise Http404("No such conversation.") from None


def message_get(visitor: Visitor, message_id: Any) -> Message:
    try:
        return Message.objects.select_related("conversation").get(
            pk=int(message_id),
            conversation__in=conversations_for(visitor),
            role=Message.Role.ASSISTANT,
        )
    except (TypeError, ValueError, Message.DoesNotExist):
        raise Http404("No such reply.") from None


def conversation_messages(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.visible().order_by("id"))
