"""Signal receivers, connected by `ChatConfig.ready()` (tests/web/test_receivers.py checks that
a serving process has them)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out

from chat.conversations.writes import conversations_claim
from chat.web.visitors import visitor_forget, visitor_id_of


def connect() -> None:
    user_logged_in.connect(claim_anonymous_conversations, dispatch_uid=CLAIM_UID)
    user_logged_out.connect(forget_visitor_at_logout, dispatch_uid=FORGET_UID)


CLAIM_UID = "chat_claim_anonymous_conversations"
FORGET_UID = "chat_forget_visitor_at_logout"


def claim_anonymous_conversations(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Signing in keeps what the visitor wrote anonymously: the visitor id survives Django's
    # session key rotation, so the conversations move to the account.
    if request is None:
        return
    if visitor_id := visitor_id_of(request):
        conversations_claim(visitor_id=visitor_id, user=user)
    # The id has done its job; whoever uses this browser anonymously next starts afresh.
    visitor_forget(request)


def forget_visitor_at_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None:
        visitor_forget(request)
