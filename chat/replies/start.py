"""The send: starting, stopping and regenerating replies.

A reply is a job, not a connection. `reply_start` saves the user's message and an assistant
message with status `streaming`, and `job_launch` (chat/replies/workers.py) runs its generation
as an asyncio task of this process. Stop is a signal the job hears, wherever it runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import providers
from chat.conversations.attached import (
    attachment_ids_clean,
    attachments_bind,
    attachments_copy,
    attachments_take,
)
from chat.conversations.errors import (
    ChatInputError,
    ServiceUnavailable,
    SpendingCapReached,
)
from chat.conversations.limits import client_key, send_check, streaming_check
from chat.conversations.reads import (
    Visitor,
    conversation_get,
    message_get,
    own_turn_required,
    user_message_get,
)
from chat.conversations.sharing import owned_conversation_get
from chat.conversations.text import has_visible, text_clean
from chat.conversations.tree import Tree, Versions
from chat.conversations.writes import leaf_set
from chat.costs.budgets import BudgetGuard, send_budget
from chat.db import db_read, db_write
from chat.models import Conversation, Message
from chat.providers.base import ChatTurn
from chat.replies.context import JobContext, job_context_build
from chat.replies.reaper import reply_reap_stale
from chat.replies.stream import SHARED_STREAM_ERRORS, get_reply_stream
from chat.replies.titles import title_from_message
from chat.replies.workers import draining, job_launch

REDIS_DOWN_MESSAGE = (
    "Chat is briefly unavailable: its message service is not answering. "
    "Your message was not sent; try again in a moment."
)
DRAINING_MESSAGE = (
    "This server is restarting. Your message was not sent; send it again in a moment."
)


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    conversation: Conversation
    assistant_message: Message
    user_message: Message | None = None
    created_conversation: bool = False
    superseded_message_id: int | None = None
    # The visible branch changed (a new version or an edit): the page redraws the message list.
    branch_changed: bool = False
    # What the reply's job is generated from, when the send already had it at hand.
    job_context: JobContext | None = None


# --- Starting --------------------------------------------------------------------------------


def _validated_text(text: str) -> str:
    text = text_clean(text or "").strip()
    if not has_visible(text):
        raise ChatInputError("Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatInputError(
            f"Your message is {len(text):,} characters long; the limit is "
            f"{settings.CHAT_MAX_MESSAGE_CHARS:,}. Shorten it and send again."
        )
    return text


def reply_start(
    *,
    visitor: Visitor,
    conversation_id: str | None,
    text: str,
    model_choice: str,
    system_prompt: str = "",
    source: str = Conversation.Source.PAGE,
    history: Sequence[ChatTurn] = (),
    max_output_tokens: int | None = None,
    attachment_ids: Sequence[object] = (),
    history_attachment_ids: Sequence[Sequence[object]] = (),
) -> ReplyStarted:
    """Validate a message and save it with a streaming assistant reply, in one transaction. The
    message follows the last one of the branch the visitor sees.

    `attachment_ids` name the sender's own uploads (docs/attachments.md) sent with it: checked
    against the sender and the model, and bound to the message in the same transaction.

    A new conversation may start with `history`: the earlier turns an API client sends along,
    saved before the message as context (marked `from_client`, so they never count as replies);
    `history_attachment_ids`, when given, names each earlier turn's uploads (an API client's
    images).
    `max_output_tokens` caps this reply below CHAT_MAX_OUTPUT_TOKENS."""
    # Cleaned before anything else, so what is checked is what is stored and sent.
    text = text_clean(text or "").strip()
    system_prompt = text_clean(system_prompt or "").strip()
    if not visitor.is_authenticated and not visitor.visitor_id:
        raise ChatInputError("Your session has expired. Reload the page and try again.")
    attachment_uuids = attachment_ids_clean(attachment_ids)
    if not has_visible(text) and not attachment_uuids:
        raise ChatInputError("Type a message first.")
    if history and conversation_id:
        raise ChatInputError("Earlier turns can only start a new conversation.")
    history = [ChatTurn(turn.role, text_clean(turn.content)) for turn in history]
    history_uuids = [attachment_ids_clean(ids) for ids in history_attachment_ids] or [
        [] for _turn in history
    ]
    if len(history_uuids) != len(history):
        raise ValueError("history_attachment_ids must name each earlier turn's files")
    for turn in [*history, ChatTurn("user", text)]:
        if len(turn.content) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise ChatInputError(
                f"Your message is {len(turn.content):,} characters long; the limit is "
                f"{settings.CHAT_MAX_MESSAGE_CHARS:,}. Shorten it and send again."
            )
    if len(system_prompt) > settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:
        raise ChatInputError(
            f"The system prompt is {len(system_prompt):,} characters long; the limit is "
            f"{settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:,}."
        )
    option = providers.resolve_model(model_choice or "")
    if option is None:
        if not providers.available_models():
            raise ChatInputError("No model is configured on this server.")
        raise ChatInputError("That model is not available here. Pick one from the list.")
    budget = _budget_for_send(visitor, provider=option.provider, model=option.model)

    with transaction.atomic():
        streaming_check(visitor)
        attachments = attachments_take(
            visitor, attachment_uuids, sees_images=option.sees_images, model_label=option.label
        )
        if not has_visible(text):
            text = ""  # files alone: the title is the first file's name
        created = not conversation_id
        parent_id: int | None = None
        path: list[Message] = []  # the new message's ancestors, root first
        if created:
            conversation = Conversation.objects.create(
                user=visitor.user if visitor.is_authenticated else None,
                visitor_id="" if visitor.is_authenticated else visitor.visitor_id,
                title=title_from_message(text or attachments[0].name),
                provider=option.provider,
                model=option.model,
                system_prompt=system_prompt,
                source=source,
            )
            # Only as many earlier turns as a reply is ever sent with: the rest is never read.
            # Each follows the one before, as the conversation's first branch.
            history_saved = history[-settings.CHAT_HISTORY_MAX_MESSAGES :] if history else []
            uuids_saved = history_uuids[len(history) - len(history_saved) :]
            for turn, turn_uuids in zip(history_saved, uuids_saved, strict=True):
                earlier_files = attachments_take(
                    visitor, turn_uuids, sees_images=option.sees_images, model_label=option.label
                )
                earlier = Message.objects.create(
                    conversation=conversation,
                    role=turn.role,
                    content=turn.content,
                    from_client=True,
                    client_key=client_key(visitor.client_ip),
                    parent_id=parent_id,
                    has_attachments=bool(earlier_files),
                )
                attachments_bind(earlier_files, earlier)
                path.append(earlier)
                parent_id = earlier.pk
        else:
            history_saved = []
            conversation = _locked_idle(visitor, conversation_id)
            path = Tree.of(conversation).branch(conversation.current_leaf_id)
            parent_id = path[-1].pk if path else None
            conversation.provider, conversation.model = option.provider, option.model
            conversation.system_prompt = system_prompt
            conversation.updated_at = timezone.now()
            if not conversation.title:
                conversation.title = title_from_message(text or attachments[0].name)
            conversation.save(
                update_fields=["provider", "model", "system_prompt", "updated_at", "title"]
            )
        user_message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            author=_author(visitor),
            content=text,
            client_key=client_key(visitor.client_ip),
            parent_id=parent_id,
            has_attachments=bool(attachments),
        )
        attachments_bind(attachments, user_message)
        assistant_message = _assistant_create(
            conversation, visitor, parent_id=user_message.pk, max_output_tokens=max_output_tokens
        )
        # Appended to the visible branch: no other message changes sides.
        conversation.current_leaf = assistant_message
        conversation.count_new_messages(len(history_saved) + 2, current_leaf=assistant_message)
    return ReplyStarted(
        conversation=conversation,
        user_message=user_message,
        assistant_message=assistant_message,
        created_conversation=created,
        # Built from what this send read and wrote: the job starts without reading it again.
        job_context=job_context_build(
            assistant_message,
            conversation,
            [*path, user_message],
            budget=budget,
            # The only reply to a message sent just now.
            versions=Versions(index=1, count=1, previous_id=None, next_id=None),
        ),
    )


def reply_regenerate(*, visitor: Visitor, message_id: int | str) -> ReplyStarted:
    """Retry (a failed reply) or Regenerate (any reply): a new version streams beside the old
    one, which is kept as an earlier version (‹ 1/2 ›), with the conversation's current model.
    The history it is sent is the branch above it; what followed the old version stays on
    that version's branch."""
    message = message_get(visitor, message_id)
    conversation = message.conversation
    own_turn_required(visitor, message, doing="regenerate")
    _budget_for_send(visitor, provider=conversation.provider, model=conversation.model)
    with transaction.atomic():
        streaming_check(visitor)
        conversation = _locked_idle(visitor, conversation.pk)
        message = Message.objects.get(pk=message.pk)
        _require_model(conversation)
        assistant_message = _assistant_create(conversation, visitor, parent_id=message.parent_id)
        leaf_set(conversation, assistant_message.pk)
    return ReplyStarted(
        conversation=conversation,
        assistant_message=assistant_message,
        superseded_message_id=message.pk,
        branch_changed=True,
    )


def message_edit(*, visitor: Visitor, message_id: int | str, text: str) -> ReplyStarted:
    """Edit a sent user message and resend it: the edit is a new branch beside the original
    (which is kept, with everything that followed it), and a reply to it starts streaming."""
    original = user_message_get(visitor, message_id)
    own_turn_required(visitor, original, doing="edit")
    text = _validated_text(text)
    conversation = original.conversation
    _budget_for_send(visitor, provider=conversation.provider, model=conversation.model)
    with transaction.atomic():
        streaming_check(visitor)
        conversation = _locked_idle(visitor, conversation.pk)
        _require_model(conversation)
        user_message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            author=_author(visitor),
            content=text,
            parent_id=original.parent_id,
            client_key=client_key(visitor.client_ip),
            has_attachments=original.has_attachments,
        )
        if original.has_attachments:
            attachments_copy(original, user_message)
        assistant_message = _assistant_create(conversation, visitor, parent_id=user_message.pk)
        leaf_set(conversation, assistant_message.pk)
    return ReplyStarted(
        conversation=conversation,
        user_message=user_message,
        assistant_message=assistant_message,
        branch_changed=True,
    )


def _locked_idle(visitor: Visitor, conversation_id: Any) -> Conversation:
    """The visitor's conversation, locked so two writes cannot both start a reply, with no
    reply streaming (one whose worker died is ended first)."""
    conversation = conversation_get(visitor, conversation_id)
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    reply_reap_stale(
        message_ids=list(conversation.messages.streaming().values_list("pk", flat=True))
    )
    if conversation.messages.streaming().exists():
        raise ChatInputError("A reply is still streaming. Stop it or wait for it to finish.")
    return conversation


def _author(visitor: Visitor) -> Any:
    """Who a message is by (and whom its reply is charged to): the signed-in sender."""
    return visitor.user if visitor.is_authenticated else None


def _require_model(conversation: Conversation) -> None:
    if providers.resolve_model(f"{conversation.provider}:{conversation.model}") is None:
        raise ChatInputError("This conversation's model is no longer available here.")


# --- Deleting a conversation ------------------------------------------------------------------


def conversation_delete(*, visitor: Visitor, conversation_id: Any) -> None:
    """Delete a conversation for its owner. It is hidden from them everywhere at once; staff
    still see it in the admin, marked deleted, unless CHAT_PURGE_DELETED removes its rows."""
    owned_conversation_get(visitor, conversation_id, doing="delete it")
    with transaction.atomic():
        conversation = _locked_idle(visitor, conversation_id)
        if settings.CHAT_PURGE_DELETED:
            conversation.delete()
        else:
            Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())


def _budget_for_send(visitor: Visitor, *, provider: str, model: str) -> BudgetGuard | None:
    """Refuse a send over the person's spending cap before anything reaches the provider;
    otherwise what is left of it, which bounds the reply."""
    budget = send_budget(
        user_id=visitor.user.pk if visitor.is_authenticated else None,
        visitor_id=visitor.visitor_id,
        client_key=client_key(visitor.client_ip),
        provider=provider,
        model=model,
    )
    if budget.refusal is not None:
        raise SpendingCapReached(
            budget.refusal.refusal(), retry_after=budget.refusal.seconds_until_reset()
        )
    return budget.guard


def _assistant_create(
    conversation: Conversation,
    visitor: Visitor,
    *,
    parent_id: int | None,
    max_output_tokens: int | None = None,
) -> Message:
    now = timezone.now()
    return Message.objects.create(
        conversation=conversation,
        parent_id=parent_id,
        client_key=client_key(visitor.client_ip),
        # Charged to the person who asked, whoever owns the conversation.
        author=_author(visitor),
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        provider=conversation.provider,
        model=conversation.model,
        created_at=now,
        heartbeat_at=now,
        max_output_tokens=max_output_tokens,
    )


async def _launched(
    write: Callable[..., ReplyStarted],
    *,
    visitor: Visitor,
    api_key_id: int | None = None,
    **kwargs: Any,
) -> ReplyStarted:
    """Run a write that starts a reply from async code, rate-limited, and launch its job."""
    if draining():
        raise ServiceUnavailable(DRAINING_MESSAGE, retry_after=2)
    try:
        await db_read(functools.partial(send_check, visitor, api_key_id=api_key_id))
    except ServiceUnavailable as exc:
        # The rate limiter's cache is Redis: down, it refuses (chat/conversations/limits.py);
        # say so plainly.
        raise ServiceUnavailable(REDIS_DOWN_MESSAGE) from exc
    # A reply that no reader on another worker could follow must not start.
    if not await get_reply_stream().available():
        raise ServiceUnavailable(REDIS_DOWN_MESSAGE)
    # On SQLite the start joins the reply path's one writer instead of waiting, asleep in
    # SQLite's busy handler, for the live replies' saves; on PostgreSQL starts run side by side.
    started = await db_write(functools.partial(write, visitor=visitor, **kwargs), concurrent=True)
    job_launch(started.assistant_message.pk, started.job_context)
    return started


async def areply_start(
    *, visitor: Visitor, api_key_id: int | None = None, **kwargs: Any
) -> ReplyStarted:
    """Start a reply from async code; `api_key_id` counts it against that API key's rate too."""
    return await _launched(reply_start, visitor=visitor, api_key_id=api_key_id, **kwargs)


async def areply_regenerate(*, visitor: Visitor, message_id: int | str) -> ReplyStarted:
    return await _launched(reply_regenerate, visitor=visitor, message_id=message_id)


async def amessage_edit(*, visitor: Visitor, message_id: int | str, text: str) -> ReplyStarted:
    return await _launched(message_edit, visitor=visitor, message_id=message_id, text=text)


# --- Stopping --------------------------------------------------------------------------------


def _streaming_reply_in(
    visitor: Visitor, conversation_id: str | None, message_id: int | str | None = None
) -> Message | None:
    """The streaming reply to stop, by its conversation or by its id, if the visitor may stop
    it: the owner any, a member their own (NotAllowed otherwise); someone else's is a 404."""
    if message_id is not None:
        message: Message | None = message_get(visitor, message_id)
        if message is not None and not message.is_streaming:
            return None
    else:
        conversation = conversation_get(visitor, conversation_id)
        message = conversation.messages.streaming().order_by("-id").first()
        if message is not None:
            message.conversation = conversation
    if message is not None:
        own_turn_required(visitor, message, doing="stop")
    return message


async def reply_stop(
    *,
    visitor: Visitor,
    conversation_id: str | None = None,
    message_id: int | str | None = None,
) -> Message | None:
    """Ask the conversation's streaming reply (or reply `message_id`) to stop. Any worker may
    call this: the job, wherever it runs, sees the signal within a second, closes the upstream
    request and keeps the text. In a shared conversation a member stops only their own reply;
    the owner any."""
    message = await db_read(_streaming_reply_in, visitor, conversation_id, message_id)
    if message is None:
        return None
    try:
        await get_reply_stream().request_stop(message.pk)
    except SHARED_STREAM_ERRORS as exc:
        # The reply ends itself when Redis fails (as service_error); say why Stop did nothing.
        raise ServiceUnavailable(
            "Stop could not be delivered: the chat's message service is not answering. "
            "The reply will end on its own shortly."
        ) from exc
    # A reply whose worker died cannot hear the signal; end it here instead (two missed beats
    # are enough, since a live worker's Redis key still spares its replies).
    await db_write(functools.partial(reply_reap_stale, message_ids=[message.pk], force=True))
    return message
