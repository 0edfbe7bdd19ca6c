"""Writes: starting, stopping and regenerating replies.

A reply is a job, not a connection. `reply_start` saves the user's message and an assistant
message with status `streaming`, and `job_launch` (in `chat.jobs`) runs its generation as an
asyncio task of this process. Stop is a signal the job hears, wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import providers
from chat.budgets import refusing_allowance
from chat.errors import ChatInputError, RateLimited, ServiceUnavailable, SpendingCapReached
from chat.jobs import job_launch, jobs_interrupt, reply_generate, reply_reap_stale, reply_wait
from chat.limits import client_key, send_check, streaming_check
from chat.models import Conversation, Message
from chat.providers.base import ChatTurn
from chat.selectors import Visitor, conversation_get, message_get
from chat.streams import get_reply_stream
from chat.text import has_visible, text_clean, title_clean

TITLE_LENGTH = 60


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    conversation: Conversation
    assistant_message: Message
    user_message: Message | None = None
    created_conversation: bool = False
    superseded_message_id: int | None = None


# --- Starting --------------------------------------------------------------------------------


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
) -> ReplyStarted:
    """Validate a message and save it with a streaming assistant reply, in one transaction.

    A new conversation may start with `history`: the earlier turns an API client sends along,
    saved before the message as context (marked `from_client`, so they never count as replies).
    `max_output_tokens` caps this reply below CHAT_MAX_OUTPUT_TOKENS."""
    # Cleaned before anything else, so what is checked is what is stored and sent.
    text = text_clean(text or "").strip()
    system_prompt = text_clean(system_prompt or "").strip()
    if not visitor.is_authenticated and not visitor.visitor_id:
        raise ChatInputError("Your session has expired. Reload the page and try again.")
    if not has_visible(text):
        raise ChatInputError("Type a message first.")
    if history and conversation_id:
        raise ChatInputError("Earlier turns can only start a new conversation.")
    history = [ChatTurn(turn.role, text_clean(turn.content)) for turn in history]
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
    _refuse_over_budget(visitor, provider=option.provider, model=option.model)

    with transaction.atomic():
        streaming_check(visitor)
        created = not conversation_id
        if created:
            conversation = Conversation.objects.create(
                user=visitor.user if visitor.is_authenticated else None,
                visitor_id="" if visitor.is_authenticated else visitor.visitor_id,
                title=_title_from(text),
                provider=option.provider,
                model=option.model,
                system_prompt=system_prompt,
                source=source,
            )
            # Only as many earlier turns as a reply is ever sent with: the rest is never read.
            kept = history[-settings.CHAT_HISTORY_MAX_MESSAGES :] if history else []
            Message.objects.bulk_create(
                Message(
                    conversation=conversation,
                    role=turn.role,
                    content=turn.content,
                    from_client=True,
                    client_key=client_key(visitor.client_ip),
                )
                for turn in kept
            )
        else:
            conversation = conversation_get(visitor, conversation_id)
            # Lock the row so two sends to one conversation cannot both start a reply.
            conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
            # A reply whose worker died must not block the conversation.
            reply_reap_stale(
                message_ids=list(conversation.messages.streaming().values_list("pk", flat=True))
            )
            if conversation.messages.streaming().exists():
                raise ChatInputError(
                    "A reply is still streaming. Stop it or wait for it to finish."
                )
            conversation.provider, conversation.model = option.provider, option.model
            conversation.system_prompt = system_prompt
            conversation.updated_at = timezone.now()
            if not conversation.title:
                conversation.title = _title_from(text)
            conversation.save(
                update_fields=["provider", "model", "system_prompt", "updated_at", "title"]
            )
        user_message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            content=text,
            client_key=client_key(visitor.client_ip),
        )
        assistant_message = _assistant_create(
            conversation, visitor, max_output_tokens=max_output_tokens
        )
        conversation.refresh_totals()
    return ReplyStarted(
        conversation=conversation,
        user_message=user_message,
        assistant_message=assistant_message,
        created_conversation=created,
    )


def reply_regenerate(*, visitor: Visitor, message_id: int | str) -> ReplyStarted:
    """Retry (a failed reply) or Regenerate (the last one): the old reply is kept for staff but
    superseded, and a new one streams in its place with the conversation's current model."""
    message = message_get(visitor, message_id)
    conversation = message.conversation
    _refuse_over_budget(visitor, provider=conversation.provider, model=conversation.model)
    with transaction.atomic():
        streaming_check(visitor)
        conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
        last = conversation.messages.visible().order_by("-id").first()
        if last is None or last.pk != message.pk:
            raise ChatInputError("Only the last reply can be regenerated.")
        if message.is_streaming:
            raise ChatInputError("This reply is still streaming. Stop it first.")
        if providers.resolve_model(f"{conversation.provider}:{conversation.model}") is None:
            raise ChatInputError("This conversation's model is no longer available here.")
        Message.objects.filter(pk=message.pk).update(superseded=True)
        conversation.updated_at = timezone.now()
        conversation.save(update_fields=["updated_at"])
        assistant_message = _assistant_create(conversation, visitor)
        conversation.refresh_totals()
    return ReplyStarted(
        conversation=conversation,
        assistant_message=assistant_message,
        superseded_message_id=message.pk,
    )


def _refuse_over_budget(visitor: Visitor, *, provider: str, model: str) -> None:
    """A send over the person's spending cap is refused before anything reaches the provider."""
    allowance = refusing_allowance(
        user_id=visitor.user.pk if visitor.is_authenticated else None,
        visitor_id=visitor.visitor_id,
        client_key=client_key(visitor.client_ip),
        provider=provider,
        model=model,
    )
    if allowance is not None:
        raise SpendingCapReached(allowance.refusal(), retry_after=allowance.seconds_until_reset())


def _assistant_create(
    conversation: Conversation, visitor: Visitor, *, max_output_tokens: int | None = None
) -> Message:
    now = timezone.now()
    return Message.objects.create(
        conversation=conversation,
        client_key=client_key(visitor.client_ip),
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        provider=conversation.provider,
        model=conversation.model,
        created_at=now,
        heartbeat_at=now,
        max_output_tokens=max_output_tokens,
    )


def _title_from(text: str) -> str:
    first_line = title_clean(text)
    if len(first_line) <= TITLE_LENGTH:
        return first_line
    return first_line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


async def _launched(
    write: Callable[..., ReplyStarted],
    *,
    visitor: Visitor,
    api_key_id: int | None = None,
    **kwargs: Any,
) -> ReplyStarted:
    """Run a write that starts a reply from async code, rate-limited, and launch its job."""
    await sync_to_async(send_check)(visitor, api_key_id=api_key_id)
    started = await sync_to_async(write)(visitor=visitor, **kwargs)
    job_launch(started.assistant_message.pk)
    return started


async def areply_start(
    *, visitor: Visitor, api_key_id: int | None = None, **kwargs: Any
) -> ReplyStarted:
    """Start a reply from async code; `api_key_id` counts it against that API key's rate too."""
    return await _launched(reply_start, visitor=visitor, api_key_id=api_key_id, **kwargs)


async def areply_regenerate(*, visitor: Visitor, message_id: int | str) -> ReplyStarted:
    return await _launched(reply_regenerate, visitor=visitor, message_id=message_id)


# --- Stopping --------------------------------------------------------------------------------


def _streaming_reply_in(visitor: Visitor, conversation_id: str) -> Message | None:
    conversation = conversation_get(visitor, conversation_id)
    return conversation.messages.streaming().order_by("-id").first()


async def reply_stop(*, visitor: Visitor, conversation_id: str) -> Message | None:
    """Ask the conversation's streaming reply to stop. Any worker may call this: the job, wherever
    it runs, sees the signal within a second, closes the upstream request and keeps the text."""
    message = await sync_to_async(_streaming_reply_in)(visitor, conversation_id)
    if message is None:
        return None
    await get_reply_stream().request_stop(message.pk)
    # A reply whose worker died cannot hear the signal; end it here instead.
    await sync_to_async(reply_reap_stale)(message_ids=[message.pk])
    return message


__all__ = [
    "ChatInputError",
    "RateLimited",
    "ReplyStarted",
    "ServiceUnavailable",
    "SpendingCapReached",
    "areply_regenerate",
    "areply_start",
    "job_launch",
    "jobs_interrupt",
    "reply_generate",
    "reply_reap_stale",
    "reply_regenerate",
    "reply_start",
    "reply_stop",
    "reply_wait",
]
