"""The live room on the page: room events rendered for one viewer (both transports), the SSE
fallback's room stream, and the typing POST of a page on SSE. Thin: chat/rooms does the work."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from chat.conversations.reads import (
    Visitor,
    conversation_get,
    conversation_messages,
    message_get,
    room_message_get,
    user_message_get,
    visible_to,
)
from chat.db import db_read
from chat.http.backpressure import (
    ResponseConnection,
    event_stream_response,
    reader_stream,
    sse_data,
)
from chat.models import Conversation, Message
from chat.rooms import events
from chat.rooms.connection import RoomConnection
from chat.rooms.layer import get_layer, room_guarded
from chat.rooms.presence import Present, presence_on, present_from_lists
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


# Presence changes rendered lately, by event id: a change is rendered once in a process, and
# each of its connections of the room gets it with its own person's chip marked. Rendered whole
# for each connection, a change cost O(people here) per connection, O(people²) in all: ~35 ms of
# the core for one change in a room of 30 (benchmarks/room_fanout.py).
PRESENCE_RENDERS_KEPT = 64
_presence_renders: OrderedDict[str, PresenceRender] = OrderedDict()


@dataclass(frozen=True, slots=True)
class PresenceRender:
    html: str  # as someone who is not in the list sees it
    chips: dict[int, tuple[str, str]]  # user id: their chip as the others see it, as they do


# A person's chip, as the others see it and as they do, by (user id, name): rendered once, not
# for every change of every room they are in.
PRESENCE_CHIPS_KEPT = 4096
_presence_chips: OrderedDict[tuple[int, str], tuple[str, str]] = OrderedDict()


def _presence_chips_of(person: Present) -> tuple[str, str]:
    key = (person.user_id, person.name)
    chips = _presence_chips.get(key)
    if chips is not None:
        _presence_chips.move_to_end(key)
        return chips
    chips = (_presence_chip(person, is_self=False), _presence_chip(person, is_self=True))
    _presence_chips[key] = chips
    while len(_presence_chips) > PRESENCE_CHIPS_KEPT:
        _presence_chips.popitem(last=False)
    return chips


def _presence_chip(person: Present, *, is_self: bool) -> str:
    return render_to_string(
        "chat/partials/_presence_chip.html", {"person": person, "is_self": is_self}
    )


def _presence_render(event: dict[str, Any]) -> PresenceRender:
    joined, left = event.get("joined") or "", event.get("left") or []
    announce = f"{joined} joined" if joined else ", ".join(f"{name} left" for name in left)
    chips = {
        person.user_id: _presence_chips_of(person)
        for person in present_from_lists(event.get("present"))
    }
    others_see = "".join(chip for chip, _own in chips.values())
    html = render_to_string(
        "chat/partials/_presence.html",
        {
            "chips": mark_safe(others_see),  # noqa: S308 - rendered (and escaped) above
            "announce": announce,
            "shown_at": int(time.time() * 1000),
            "oob": True,
        },
    )
    return PresenceRender(html, chips)


def presence_fragment(event: dict[str, Any], *, viewer_id: int | None) -> str:
    key = str(event.get("id") or "")
    rendered = _presence_renders.get(key) if key else None
    if rendered is None:
        rendered = _presence_render(event)
        if key:
            _presence_renders[key] = rendered
            while len(_presence_renders) > PRESENCE_RENDERS_KEPT:
                _presence_renders.popitem(last=False)
    if viewer_id is None or viewer_id not in rendered.chips:
        return rendered.html
    # The chip carries its person's id: it is the only one of its kind in the list.
    chip, own = rendered.chips[viewer_id]
    return rendered.html.replace(chip, own, 1)


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
    as this viewer (a reply they may not see is Http404). `room_started_html` shares the reads
    and the render among the room's connections in this process."""
    reply = message_get(visitor, event["assistant_id"])
    viewer_id = visitor.user.pk if visitor.is_authenticated else None
    if event.get("branch_changed"):
        return render_to_string(
            "chat/partials/_message_list.html",
            {
                "messages": conversation_messages(reply.conversation),
                "totals": reply.conversation.totals(),
                "shared": True,
                "viewer_id": viewer_id,
            },
        )
    user_message = (
        user_message_get(visitor, event["user_message_id"])
        if event.get("user_message_id")
        else None
    )
    return _started_render(reply, user_message, viewer_id)


def _started_render(reply: Message, user_message: Message | None, viewer_id: int | None) -> str:
    context: dict[str, Any] = {
        "reply": reply,
        "user_message": user_message,
        "shared": True,
        "viewer_id": viewer_id,
    }
    return render_to_string("chat/partials/_room_started.html", context)


# The new bubbles of a send in a room are read and rendered once in this process for all the
# room's connections here, which hear of it within moments of each other; the shared result is
# kept this long. (Read and rendered for each member, one after another on the few database
# threads, a room of 50 waited ~0.3 s for its last member's reply to begin, and those members
# got its first tokens that much late: benchmarks/room_fanout.py.)
STARTED_SHARED_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class RoomStarted:
    reply: Message
    user_message: Message | None
    html: str  # as every member but the question's author sees it


_started: dict[tuple[asyncio.AbstractEventLoop, str, str], asyncio.Future[RoomStarted]] = {}


def _room_started_read(event: dict[str, Any]) -> RoomStarted:
    reply = room_message_get(event["assistant_id"], role=Message.Role.ASSISTANT)
    user_message = None
    if event.get("user_message_id"):
        user_message = room_message_get(event["user_message_id"], role=Message.Role.USER)
        if user_message.conversation_id != reply.conversation_id:
            raise Http404("No such message.")
    return RoomStarted(reply, user_message, _started_render(reply, user_message, None))


def _room_started_for(visitor: Visitor, started: RoomStarted) -> str:
    if not visible_to(visitor, started.reply.conversation):
        raise Http404("No such message.")
    author_id = started.user_message.author_id if started.user_message else None
    if visitor.is_authenticated and author_id == visitor.user.pk:
        # The author's other tabs say "You".
        return _started_render(started.reply, started.user_message, author_id)
    return started.html


def _started_read_done(
    key: tuple[asyncio.AbstractEventLoop, str, str], done: asyncio.Future[RoomStarted]
) -> None:
    # A failed read is not kept (the next connection to hear of the reply reads again), and is
    # looked at even if every connection waiting for it has gone.
    if done.cancelled() or done.exception() is not None:
        _started.pop(key, None)


async def room_started_html(visitor: Visitor, event: dict[str, Any]) -> str:
    """`reply_started_fragment` for this viewer, each viewer checked on their own (one query for a
    member, none for the owner) and the reads and the render shared by this process's
    connections of the room."""
    if event.get("branch_changed"):
        return await db_read(reply_started_fragment, visitor, event)  # the viewer's whole branch
    loop = asyncio.get_running_loop()
    key = (loop, str(event.get("assistant_id")), str(event.get("user_message_id")))
    shared = _started.get(key)
    if shared is None:
        shared = _started[key] = asyncio.ensure_future(db_read(_room_started_read, event))
        shared.add_done_callback(functools.partial(_started_read_done, key))
        loop.call_later(STARTED_SHARED_SECONDS, _started.pop, key, None)
    started = await asyncio.shield(shared)
    return await db_read(_room_started_for, visitor, started)


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
                html = await room_started_html(visitor, event)
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
