"""Rooms: the owner invites people into a conversation by a link, and removes them.

Who may do what (docs/features.md, "Sharing and rooms"): the owner — a signed-in person; an
anonymous visitor cannot share — renames, deletes and shares the conversation, and may stop any
reply or regenerate and edit any turn; a member (a signed-in person who opened the invite link)
reads, sends, and stops, regenerates or edits only their own turns. Everyone else gets 404.
The owner also decides whether the room shows who is here and who is typing.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from chat.conversations.errors import NotAllowed
from chat.conversations.reads import Visitor, conversation_get, is_owner
from chat.conversations.signals import member_removed, presence_switched, sharing_stopped
from chat.models import Conversation, ConversationInvite, ConversationMember

# The expiries the sharing page offers (none, a day, a week).
INVITE_EXPIRIES: dict[str, timedelta | None] = {
    "": None,
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
}
ANONYMOUS_OWNER_MESSAGE = (
    "Sharing needs an account: sign in, and the conversations of this browser become yours "
    "to share."
)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def owned_conversation_get(
    visitor: Visitor, conversation_id: Any, *, doing: str = "do that"
) -> Conversation:
    """The visitor's own conversation; a member gets NotAllowed, anyone else 404."""
    conversation = conversation_get(visitor, conversation_id)
    if not is_owner(visitor, conversation):
        raise NotAllowed(f"Only the conversation's owner can {doing}.")
    return conversation


def _shareable(visitor: Visitor, conversation_id: Any) -> Conversation:
    conversation = owned_conversation_get(visitor, conversation_id, doing="share it")
    if not visitor.is_authenticated:
        raise NotAllowed(ANONYMOUS_OWNER_MESSAGE)
    return conversation


def invite_current(conversation: Conversation) -> ConversationInvite | None:
    """The conversation's working invite link, if it has one."""
    now = timezone.now()
    for invite in conversation.invites.filter(disabled_at__isnull=True).order_by("-created_at"):
        if invite.expires_at is None or invite.expires_at > now:
            return invite
    return None


def invite_create(
    *, visitor: Visitor, conversation_id: Any, expiry: str = ""
) -> ConversationInvite:
    """A new invite link ("Share…", "New link"): the previous link stops working."""
    if expiry not in INVITE_EXPIRIES:
        expiry = ""
    lifetime = INVITE_EXPIRIES[expiry]
    with transaction.atomic():
        conversation = _shareable(visitor, conversation_id)
        now = timezone.now()
        conversation.invites.filter(disabled_at__isnull=True).update(disabled_at=now)
        return ConversationInvite.objects.create(
            conversation=conversation,
            token=new_token(),
            expires_at=now + lifetime if lifetime else None,
        )


def invite_disable(*, visitor: Visitor, conversation_id: Any) -> Conversation:
    """Turn the invite link off: nobody new can join; members stay."""
    conversation = _shareable(visitor, conversation_id)
    conversation.invites.filter(disabled_at__isnull=True).update(disabled_at=timezone.now())
    return conversation


def invite_check(token: str) -> ConversationInvite:
    """A working invite link, or Http404 (turned off, expired, unknown: the same answer)."""
    invite = (
        ConversationInvite.objects.select_related("conversation")
        .filter(token=str(token)[:64])
        .first()
    )
    if invite is None or not invite.is_active or invite.conversation.deleted_at is not None:
        raise Http404("No such invite.")
    return invite


def invite_join(*, visitor: Visitor, token: str) -> Conversation:
    """Join the conversation of a working invite link as a member (again: nothing changes; the
    owner: nothing to join). A disabled, expired or unknown link is the same 404."""
    conversation = invite_check(token).conversation
    if visitor.is_authenticated and conversation.user_id != visitor.user.pk:
        ConversationMember.objects.get_or_create(conversation=conversation, user=visitor.user)
    return conversation


def member_remove(*, visitor: Visitor, conversation_id: Any, user_id: Any) -> Conversation:
    """The owner removes a member: their next request gets 404, and the live part of the room
    closes their sockets and event streams (`member_removed`, after the commit)."""
    with transaction.atomic():
        conversation = _shareable(visitor, conversation_id)
        try:
            removed, _ = ConversationMember.objects.filter(
                conversation=conversation, user_id=int(user_id)
            ).delete()
        except (TypeError, ValueError):
            removed = 0
        if removed:
            conversation_pk: uuid.UUID = conversation.pk
            member_pk = int(user_id)
            transaction.on_commit(
                lambda: member_removed.send(
                    sender=Conversation, conversation_id=conversation_pk, user_id=member_pk
                )
            )
    return conversation


def sharing_stop(*, visitor: Visitor, conversation_id: Any) -> Conversation:
    """Turn the invite off and remove everyone (`sharing_stopped`, after the commit)."""
    with transaction.atomic():
        conversation = _shareable(visitor, conversation_id)
        conversation.invites.filter(disabled_at__isnull=True).update(disabled_at=timezone.now())
        memberships = ConversationMember.objects.filter(conversation=conversation)
        user_ids = list(memberships.values_list("user_id", flat=True))
        memberships.delete()
        conversation_pk: uuid.UUID = conversation.pk
        transaction.on_commit(
            lambda: sharing_stopped.send(
                sender=Conversation, conversation_id=conversation_pk, user_ids=user_ids
            )
        )
    return conversation


def presence_set(*, visitor: Visitor, conversation_id: Any, enabled: bool) -> Conversation:
    """The owner's switch "Show who is here and who is typing". Off, the room drops what it
    stores of who is here and every page is told (`presence_switched`, after the commit); from
    then on no presence or typing event is sent or stored for the conversation. On, the pages
    open on it show who is here again. Setting it as it already is changes nothing."""
    with transaction.atomic():
        conversation = _shareable(visitor, conversation_id)
        changed = Conversation.objects.filter(
            pk=conversation.pk, presence_enabled=not enabled
        ).update(presence_enabled=enabled)
        conversation.presence_enabled = enabled
        if changed:
            conversation_pk: uuid.UUID = conversation.pk
            transaction.on_commit(
                lambda: presence_switched.send(
                    sender=Conversation, conversation_id=conversation_pk, enabled=enabled
                )
            )
    return conversation
