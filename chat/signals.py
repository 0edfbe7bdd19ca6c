from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from chat.models import Conversation
from chat.visitors import VISITOR_SESSION_KEY, visitor_forget, visitor_id_of

__all__ = ["VISITOR_SESSION_KEY"]


@receiver(user_logged_in, dispatch_uid="chat_claim_anonymous_conversations")
def claim_anonymous_conversations(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Signing in keeps what the visitor wrote anonymously: the visitor id survives Django's
    # session key rotation, so the conversations move to the account.
    if request is None:
        return
    if visitor_id := visitor_id_of(request):
        Conversation.objects.filter(user__isnull=True, visitor_id=visitor_id).update(user=user)
    # The id has done its job; whoever uses this browser anonymously next starts afresh.
    visitor_forget(request)


@receiver(user_logged_out, dispatch_uid="chat_forget_visitor_at_logout")
def forget_visitor_at_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None:
        visitor_forget(request)
