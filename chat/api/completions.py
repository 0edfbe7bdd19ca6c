"""Writes and reads behind the API: a completion is a conversation (source=api) whose reply
job is started by `chat.replies.start` exactly as the page starts one."""

from __future__ import annotations

import uuid
from typing import Any

from chat.api.images import request_images_attach
from chat.api.wire import CompletionRequest
from chat.conversations.reads import Visitor
from chat.models import ApiKey, Conversation, Message
from chat.replies import start as services


def visitor_for(api_key: ApiKey, *, client_ip: str = "") -> Visitor:
    return Visitor(user=api_key.user, visitor_id="", client_ip=client_ip)


async def completion_start(
    *, api_key: ApiKey, visitor: Visitor, request: CompletionRequest
) -> services.ReplyStarted:
    """Start the reply a request asks for, through the same service as a page send: counted
    against the key's, the user's and the IP's rates, the streaming caps and the spending caps.
    Its images are read (or found, when sent before) first, as the sender's unsent uploads."""
    attachment_ids, history_attachment_ids = await request_images_attach(visitor, request)
    return await services.areply_start(
        visitor=visitor,
        api_key_id=api_key.pk,
        conversation_id=None,
        text=request.text,
        model_choice=request.model.value,
        system_prompt=request.system_prompt,
        source=Conversation.Source.API,
        history=request.history,
        max_output_tokens=request.max_tokens,
        attachment_ids=attachment_ids,
        history_attachment_ids=history_attachment_ids,
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
