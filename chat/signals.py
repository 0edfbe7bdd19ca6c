from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from chat.models import Conversation

VISITOR_SESSION_KEY = "chat_visitor_id"


@receiver(user_logged_in, dispatch_uid="chat_claim_anonymous_conversations")
def claim_anonymous_conversations(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Signing in keeps what the visitor wrote anonymously: the visitor id survives Django's
    # session key rotation, so the conversations move to the account.
    visitor_id = request.session.get(VISITOR_SESSION_KEY) if request is not None else None
    if visitor_id:
        Conversation.objects.filter(user__isnull=True, visitor_id=visitor_id).update(user=user)
