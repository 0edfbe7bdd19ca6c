"""The live room on the page: room events rendered for one viewer (both transports), the SSE
fallback's room stream, and the typing POST of a page on SSE. Thin: chat/rooms does the work."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from chat.conversations.reads import (
    Visitor,
    conversation_get,
    conversation_messages,
    message_get,
    user_message_get,
)
from chat.db import db_read
from chat.http.backpressure import (
    ResponseConnection,
    event_stream_response,
    reader_stream,
    sse_data,
)
from chat.models import Conversation
from chat.rooms import events
from chat.rooms.connection import RoomConnection
from chat.rooms.layer import get_layer, room_guarded
from chat.rooms.presence import presence_on, present_from_lists
from chat.rooms.readers import room_listen

# What a page's room stream calls itself, so that the room does not echo the page's own sends
# back to it (a page on SSE sends over POST, which has no channel).
MAX_CLIENT_CHARS = 64


def page_origin(client: str | None) -> str:
    client = (client or "")[:MAX_CLIENT_CHARS]
    return f"page:{client}" if client else ""


def display_name(user: Any) -> str:
    full = (user.get_full_name() or "").strip() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


# --- Room events as HTML, for one viewer --------------------------------------------------------


def presence_fragment(event: dict[str, Any], *, viewer_id: int | None) -> str:
    joined, left = event.get("joined") or "", event.get("left") or []
    announce = f"{joined} joined" if joined else ", ".join(f"{name} left" for name in left)
    return render_to_string(
        "chat/partials/_presence.html",
        {
            "present": present_from_lists(event.get("present")),
            "viewer_id": viewer_id,
            "announce": announce,
            "shown_at": int(time.time() * 1000),
            "oob": True,
        },
    )


def typing_fragment(event: dict[str, Any]) -> str:
    return render_to_string(
        "chat/partials/_typing.html",
        {
            "name": str(event.get("name", "")),
            "typist_id": event.get("user_id"),
            "shown_at": int(time.time() * 1000),
        },
    )


def presence_switch_fragment(event: dict[str, Any]) -> str:
    """The owner turned presence off (the chips and the typing line go, the header says so) or
    on (the header note goes; who is here follows as each connection says it is here again)."""
    enabled = bool(event.get("enabled"))
    return render_to_string(
        "chat/partials/_presence_switched.html",
        {
            "enabled": enabled,
            "switched_off": not enabled,
            "announce": (
                "The owner turned on who is here and who is typing."
                if enabled
                else "The owner turned off who is here and who is typing."
            ),
            "shown_at": int(time.time() * 1000),
        },
    )


def removed_fragment() -> str:
    return render_to_string("chat/partials/_room_removed.html")


def reply_started_fragment(visitor: Visitor, event: dict[str, Any]) -> str:
    """Another member's send as this viewer's page shows it: their message (with their name)
    and the reply's streaming bubble, or the whole branch after a Regenerate or an Edit. Read
    as this viewer (a reply they may not see is Http404)."""
    reply = message_get(visitor, event["assistant_id"])
    if event.get("branch_changed"):
        return render_to_string(
            "chat/partials/_message_list.html",
            {
                "messages": conversation_messages(reply.conversation),
                "totals": reply.conversation.totals(),
                "shared": True,
                "viewer_id": visitor.user.pk if visitor.is_authenticated else None,
            },
        )
    context: dict[str, Any] = {
        "reply": reply,
        "user_message": (
            user_message_get(visitor, event["user_message_id"])
            if event.get("user_message_id")
            else None
        ),
        "shared": True,
        "viewer_id": visitor.user.pk if visitor.is_authenticated else None,
    }
    return render_to_string("chat/partials/_room_started.html", context)


def room_fragment(visitor: Visitor, event: dict[str, Any]) -> str | None:
    """The HTML for a room event that needs no database (None for the others)."""
    viewer_id = visitor.user.pk if visitor.is_authenticated else None
    kind = event.get("type")
    if kind == events.PRESENCE:
        return presence_fragment(event, viewer_id=viewer_id)
    if kind == events.TYPING:
        return None if event.get("user_id") == viewer_id else typing_fragment(event)
    if kind == events.PRESENCE_SWITCH:
        return presence_switch_fragment(event)
    if kind == events.REMOVED:
        return removed_fragment() if viewer_id in event.get("user_ids", []) else None
    return None


async def announce_started(started: Any, *, origin: str) -> None:
    """Tell the room of a shared conversation that a reply started (a new conversation has no
    room yet)."""
    if started.created_conversation:
        return
    # The reply has started whatever the room hears: its sender's page follows it regardless.
    await room_guarded(
        events.reply_started(
            started.conversation.pk,
            assistant_id=started.assistant_message.pk,
            user_message_id=started.user_message.pk if started.user_message else None,
            branch_changed=started.branch_changed,
            origin=origin,
        ),
        doing="announce a reply",
    )


# --- The SSE fallback: the room as an event stream ---------------------------------------------


def _room_visitor(request: HttpRequest) -> Visitor:
    return Visitor(user=request.user, visitor_id="")


def _room_conversation(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    if not request.user.is_authenticated:
        raise Http404("No such conversation.")
    return conversation_get(_room_visitor(request), conversation_id)


@require_GET
async def room_events(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponseBase:
    """The room of a conversation as SSE: presence, typing, the owner's presence switch and
    other members' sends as HTML fragments (unnamed events, which hx-sse swaps), `event:
    removed` before it ends for a person taken out of it. Members only (404 for anyone else,
    as for the page)."""
    await request.auser()
    conversation = await db_read(_room_conversation, request, conversation_id)
    visitor = _room_visitor(request)
    room = RoomConnection(
        conversation.pk,
        user_id=int(request.user.pk or 0),
        name=display_name(request.user),
        channel=await get_layer().new_channel(),
        presence=presence_on(conversation),
    )
    own_origin = page_origin(request.GET.get("client"))
    return event_stream_response(
        reader_stream(
            _room_stream(visitor, room, own_origin),
            connection=ResponseConnection(request),
            release=_nothing,
        ),
        release=_nothing,
    )


def _nothing() -> None:
    return None


async def _room_stream(visitor: Visitor, room: RoomConnection, origin: str) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    async for event in room_listen(room):
        if event is None:
            yield ": ping\n\n"
            continue
        html: str | None
        if event.get("type") == events.REPLY:
            if origin and event.get("origin") == origin:
                continue
            try:
                html = await db_read(reply_started_fragment, visitor, event)
            except Http404:
                continue
        else:
            html = room_fragment(visitor, event)
        if html:
            yield sse_data(html) + "\n"
        if event.get("type") == events.REMOVED and room.user_id in event.get("user_ids", []):
            yield "event: removed\ndata: \n\n"
            return


@require_POST
async def typing(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """A page on SSE says its person is typing (a page on the WebSocket sends a frame)."""
    await request.auser()
    conversation = await db_read(_room_conversation, request, conversation_id)
    if presence_on(conversation):
        room = RoomConnection(
            conversation.pk,
            user_id=int(request.user.pk or 0),
            name=display_name(request.user),
            channel="",
            presence=True,
        )
        await room_guarded(room.typing(), doing="relay typing")
    return HttpResponse(status=204)


def room_page_context(visitor: Visitor, conversation: Conversation | None) -> dict[str, Any]:
    """What the page needs of its room: whether it is shared (bubbles say who wrote them) and
    whether it joins one at all (signed-in people only: nobody can share with a visitor)."""
    if conversation is None or not visitor.is_authenticated:
        return {"room": False, "shared": False}
    return {
        "room": True,
        "shared": conversation.memberships.exists(),
        "viewer_id": visitor.user.pk,
        "presence": presence_on(conversation),
        # The owner turned it off here (the header says so; off for the whole site, it does not).
        "presence_switched_off": settings.CHAT_PRESENCE and not conversation.presence_enabled,
    }
