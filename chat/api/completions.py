"""Writes and reads behind the API: a completion is a conversation (source=api) whose reply
job is started by `chat.services` exactly as the page starts one."""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat import services
from chat.api.wire import CompletionRequest
from chat.models import ApiKey, Conversation, Message
from chat.selectors import Visitor


def visitor_for(api_key: ApiKey) -> Visitor:
    return Visitor(user=api_key.user, visitor_id="")


async def completion_start(*, api_key: ApiKey, request: CompletionRequest) -> services.ReplyStarted:
    """Start the reply a request asks for. It counts against the key's rate limit here, and
    against the user's rate limit and spending caps in `chat.services`, as page sends do."""
    wait = await sync_to_async(services.send_wait_seconds)(
        group="chat-api-key", key=f"apikey:{api_key.pk}", rate=settings.CHAT_API_KEY_RATE_LIMIT
    )
    if wait:
        raise services.SendRefused(
            "This API key is sending requests too quickly. Wait a minute and try again.",
            reason="rate_limit",
            retry_after=wait,
        )
    return await services.areply_start(
        visitor=visitor_for(api_key),
        conversation_id=None,
        text=request.text,
        model_choice=request.model.value,
        system_prompt=request.system_prompt,
        source=Conversation.Source.API,
        history=request.history,
        max_output_tokens=request.max_tokens,
    )


def completion_get(*, user: Any, completion_id: str) -> Message | None:
    """The reply an API request of `user` created, by its completion id, or None."""
    hex_id = completion_id.removeprefix("chatcmpl-")
    try:
        conversation_id = uuid.UUID(hex=hex_id)
    except ValueError:
        return None
    # The first reply generated in the conversation is the request's own; the conversation may
    # have been continued on the page since.
    return (
        Message.objects.replies()
        .select_related("conversation")
        .filter(
            conversation_id=conversation_id,
            conversation__user=user,
            conversation__source=Conversation.Source.API,
        )
        .order_by("id")
        .first()
    )
