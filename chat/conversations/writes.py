"""Writes to a conversation that start no reply: which branch shows, deleting a failed turn,
renaming, and claiming a visitor's conversations at sign-in. (Writes that start or stop a reply
are in chat/replies/start.py.)"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from chat.conversations.errors import ChatInputError
from chat.conversations.reads import (
    Visitor,
    chat_message_get,
    deleted_own,
    message_get,
    own_turn_required,
)
from chat.conversations.sharing import owned_conversation_get
from chat.conversations.text import has_visible, title_clean
from chat.conversations.tree import Tree
from chat.models import Attachment, Conversation, Message

RENAME_MAX_CHARS = 200  # Conversation.title's max_length


def leaf_set(conversation: Conversation, leaf_id: int | None, *, tree: Tree | None = None) -> None:
    """Make the branch ending at `leaf_id` the one shown, mark every other message superseded
    (for staff and exports), and recount the totals — inside the caller's transaction."""
    tree = tree or Tree.of(conversation)
    shown = [m.pk for m in tree.branch(leaf_id)]
    messages = conversation.messages.all()
    messages.filter(superseded=True, pk__in=shown).update(superseded=False)
    messages.filter(superseded=False).exclude(pk__in=shown).update(superseded=True)
    conversation.current_leaf_id = leaf_id
    conversation.updated_at = timezone.now()
    conversation.refresh_totals(current_leaf_id=leaf_id, updated_at=conversation.updated_at)


def branch_switch(*, visitor: Visitor, message_id: int | str) -> Conversation:
    """Show another version of a message (‹ ›): the branch becomes the newest line of messages
    below it."""
    message = chat_message_get(visitor, message_id)
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
        tree = Tree.of(conversation)
        leaf_set(conversation, tree.leaf_below(message.pk), tree=tree)
    return conversation


def turn_delete(*, visitor: Visitor, message_id: int | str) -> Conversation:
    """Delete a failed reply (or one stopped before any text) and, if it was its question's only
    reply, the question too. The rows stay for staff and in the totals (they may have cost
    something), marked deleted; messages that followed are re-attached above the turn."""
    message = message_get(visitor, message_id)
    own_turn_required(visitor, message, doing="delete")
    if message.is_streaming:
        raise ChatInputError("This reply is still streaming. Stop it first.")
    if not (message.failed or not message.content):
        raise ChatInputError("Only a failed reply can be deleted. Regenerate it instead.")
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
        tree = Tree.of(conversation)
        question = tree.by_id.get(message.parent_id) if message.parent_id else None
        siblings = tree.children.get(message.parent_id if question else None, [])
        keep_question = question is None or len(siblings) > 1
        below = tree.children.get(message.pk, [])
        if below and keep_question:
            raise ChatInputError(
                "Later messages follow this reply. Retry it, or switch to another version."
            )
        now = timezone.now()
        removed = [message.pk] if keep_question else [message.pk, question.pk]  # type: ignore[union-attr]
        anchor = message.parent_id if keep_question else question.parent_id  # type: ignore[union-attr]
        Message.objects.filter(pk__in=[m.pk for m in below]).update(parent_id=anchor)
        Message.objects.filter(pk__in=removed).update(deleted_at=now, superseded=True)
        tree = Tree.of(conversation)
        leaf = conversation.current_leaf_id
        if leaf in removed or leaf not in tree.by_id:
            leaf = tree.leaf_below(anchor)
        leaf_set(conversation, leaf, tree=tree)
    return conversation


def conversation_rename(*, visitor: Visitor, conversation_id: Any, title: str) -> Conversation:
    title = title_clean(title or "")
    if not has_visible(title):
        raise ChatInputError("Give the conversation a name.")
    if len(title) > RENAME_MAX_CHARS:
        raise ChatInputError(f"A name is at most {RENAME_MAX_CHARS} characters long.")
    conversation = owned_conversation_get(visitor, conversation_id, doing="rename it")
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.title = title
    return conversation


def conversations_claim(*, visitor_id: str, user: Any) -> int:
    """Give a visitor's anonymous conversations (and the files they attached) to the account
    they signed in to."""
    if not visitor_id:
        return 0
    Attachment.objects.filter(user__isnull=True, visitor_id=visitor_id).update(user=user)
    return Conversation.objects.filter(user__isnull=True, visitor_id=visitor_id).update(user=user)


def conversation_restore(*, visitor: Visitor, conversation_id: Any) -> Conversation:
    """Undo a delete: the owner's conversation is back in their sidebar, as it was. Only while
    it is kept (CHAT_PURGE_DELETED removes the rows at once, and then there is nothing to undo)."""
    conversation = deleted_own(visitor, conversation_id)
    if conversation is None:
        raise Http404("No deleted conversation of yours.")
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=None)
    conversation.deleted_at = None
    return conversation


def conversation_pin(*, visitor: Visitor, conversation_id: Any, pinned: bool) -> Conversation:
    """Pin a conversation to the top of its owner's sidebar ("Pinned"), or unpin it."""
    conversation = owned_conversation_get(
        visitor, conversation_id, doing="pin it" if pinned else "unpin it"
    )
    pinned_at = timezone.now() if pinned else None
    if pinned and conversation.pinned_at is not None:
        pinned_at = conversation.pinned_at  # pinning again keeps its place in the group
    Conversation.objects.filter(pk=conversation.pk).update(pinned_at=pinned_at)
    conversation.pinned_at = pinned_at
    return conversation


def conversation_archive(*, visitor: Visitor, conversation_id: Any, archived: bool) -> Conversation:
    """Archive a conversation (it leaves the sidebar for the archived page; its link still
    works), or bring it back."""
    conversation = owned_conversation_get(
        visitor, conversation_id, doing="archive it" if archived else "unarchive it"
    )
    archived_at = (conversation.archived_at or timezone.now()) if archived else None
    Conversation.objects.filter(pk=conversation.pk).update(archived_at=archived_at)
    conversation.archived_at = archived_at
    return conversation
