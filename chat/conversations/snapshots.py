"""Snapshot shares: a read-only copy of the branch on screen, published at `/s/<token>`.

The snapshot is copied when the owner shares (and again when they share again: the same link,
updated), so what later happens in the conversation is not published. A revoked or expired
link, or one of a deleted conversation, is a 404 like an unknown one.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat.attachments.shown import message_files
from chat.conversations.errors import NotAllowed
from chat.conversations.reads import Visitor, conversation_messages
from chat.conversations.sharing import INVITE_EXPIRIES, new_token, owned_conversation_get
from chat.models import Attachment, Conversation, ConversationShare, Message

SHARE_EXPIRIES: dict[str, timedelta | None] = INVITE_EXPIRIES


def _snapshot_of(conversation: Conversation) -> list[dict[str, Any]]:
    turns = []
    for message in conversation_messages(conversation):
        files = [shown.as_snapshot() for shown in message_files(message)]
        if message.is_streaming or not (message.content or files):
            continue  # a reply under way, or one that failed before any text
        turn: dict[str, Any] = {
            "role": message.role,
            "author": message.author.get_username() if message.author else "",
            "content": message.content,
            "created_at": message.created_at.isoformat(),
            "model": message.model if message.role == Message.Role.ASSISTANT else "",
        }
        if files:
            turn["files"] = files
        turns.append(turn)
    return turns


def snapshot_attachment(token: str, attachment_id: Any) -> Attachment:
    """A file the snapshot at `token` holds, while its link works; Http404 for any other file
    (even one of the same conversation that the snapshot does not hold) and once the link is
    revoked or expired."""
    share = share_get(token)
    wanted = str(attachment_id)
    held = {
        str(record.get("id"))
        for turn in share.snapshot
        for record in turn.get("files") or ()
        if isinstance(record, dict)
    }
    if wanted not in held:
        raise Http404("No such file.")
    attachment = Attachment.objects.filter(pk=wanted).first()
    if attachment is None or attachment.message_id is None:
        raise Http404("No such file.")
    return attachment


def share_publish(*, visitor: Visitor, conversation_id: Any, expiry: str = "") -> ConversationShare:
    """Publish the branch on screen (again: the same link, its snapshot updated)."""
    conversation = owned_conversation_get(visitor, conversation_id, doing="publish it")
    if not visitor.is_authenticated:
        raise NotAllowed("Publishing a link needs an account: sign in first.")
    lifetime = SHARE_EXPIRIES.get(expiry)
    now = timezone.now()
    snapshot = _snapshot_of(conversation)
    with transaction.atomic():
        share = (
            ConversationShare.objects.select_for_update()
            .filter(conversation=conversation, owner=visitor.user, revoked_at__isnull=True)
            .first()
        )
        if share is None:
            share = ConversationShare(
                conversation=conversation, owner=visitor.user, token=new_token(), created_at=now
            )
        share.snapshot = snapshot
        share.title = conversation.title
        share.updated_at = now
        share.expires_at = now + lifetime if lifetime else None
        share.save()
    return share


def share_current(visitor: Visitor, conversation: Conversation) -> ConversationShare | None:
    """The owner's working link for this conversation, if any."""
    if not visitor.is_authenticated:
        return None
    share = (
        ConversationShare.objects.filter(
            conversation=conversation, owner=visitor.user, revoked_at__isnull=True
        )
        .order_by("-updated_at")
        .first()
    )
    return share if share is not None and share.is_active else None


def share_get(token: str) -> ConversationShare:
    """A working snapshot link, or Http404 (revoked, expired, unknown: the same answer)."""
    share = (
        ConversationShare.objects.select_related("conversation")
        .filter(token=str(token)[:64])
        .first()
    )
    if share is None or not share.is_active or share.conversation.deleted_at is not None:
        raise Http404("No such link.")
    return share


def shares_of(user: Any) -> list[ConversationShare]:
    """Every link a person published, newest first (revoked and expired ones too, marked)."""
    return list(ConversationShare.objects.filter(owner=user).order_by("-updated_at", "-id"))


def share_revoke(*, user: Any, share_id: Any) -> None:
    try:
        pk = int(share_id)
    except (TypeError, ValueError):
        raise Http404("No such link.") from None
    updated = ConversationShare.objects.filter(pk=pk, owner=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated and not ConversationShare.objects.filter(pk=pk, owner=user).exists():
        raise Http404("No such link.")


def share_continue(*, visitor: Visitor, token: str) -> Conversation:
    """A new conversation of the visitor's, holding a copy of the snapshot's turns (as earlier
    turns: context for the model, never replies counted or charged here) and of their files
    (rows of the visitor's own, sharing the stored files)."""
    if not visitor.is_authenticated:
        raise NotAllowed("Sign in to continue this conversation.")
    share = share_get(token)
    source = share.conversation
    with transaction.atomic():
        conversation = Conversation.objects.create(
            user=visitor.user,
            title=(share.title or "Shared conversation")[:200],
            provider=source.provider,
            model=source.model,
        )
        parent_id: int | None = None
        for turn in share.snapshot:
            role = turn.get("role")
            if role not in (Message.Role.USER, Message.Role.ASSISTANT):
                continue
            created = parse_datetime(str(turn.get("created_at") or "")) or timezone.now()
            files = _held_files(turn) if role == Message.Role.USER else []
            message = Message.objects.create(
                conversation=conversation,
                role=role,
                content=str(turn.get("content") or ""),
                model=str(turn.get("model") or "")[:100],
                from_client=True,
                created_at=created,
                parent_id=parent_id,
                has_attachments=bool(files),
            )
            _files_copy(files, message, owner=visitor.user)
            parent_id = message.pk
        conversation.refresh_totals(current_leaf_id=parent_id, updated_at=timezone.now())
        conversation.current_leaf_id = parent_id
    return conversation


def _held_files(turn: dict[str, Any]) -> list[Attachment]:
    """The files a snapshot's turn holds that are still stored, in their order."""
    ids = [str(r.get("id")) for r in turn.get("files") or () if isinstance(r, dict)]
    if not ids:
        return []
    found = {str(a.pk): a for a in Attachment.objects.filter(pk__in=ids, message__isnull=False)}
    return [found[i] for i in ids if i in found]


def _files_copy(files: list[Attachment], message: Message, *, owner: Any) -> None:
    """The continuing person's own rows for a copied turn's files (sharing the stored files),
    so the model is sent them again and they open for their new owner."""
    for attachment in files:
        attachment.pk = uuid.uuid4()
        attachment._state.adding = True
        attachment.user = owner
        attachment.visitor_id = ""
        attachment.message = message
        attachment.created_at = timezone.now()
        attachment.save(force_insert=True)
