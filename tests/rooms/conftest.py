"""A shared conversation (an owner and a member), their sockets, and the channel layer each
test starts with: a fresh in-memory one, or channels-redis on the suite's Redis (`room_redis`)."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

from chat.conversations import sharing
from chat.conversations.reads import Visitor
from chat.models import Conversation
from chat.rooms.connection import leave_checks_done
from chat.rooms.layer import redis_layer_hosts
from chat.rooms.presence import presence_forget


@pytest.fixture(autouse=True)
def room_layer(settings):
    # A layer of the test's own event loop (the setting's change drops the layers made before).
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    presence_forget()
    yield settings
    presence_forget()


@pytest.fixture
def room_redis(settings, use_redis):
    """channels-redis and presence on the suite's Redis, as several workers run them."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.rooms.redis_layer.ResilientRedisChannelLayer",
            "CONFIG": {"hosts": redis_layer_hosts(use_redis)},
        }
    }
    return use_redis


def _user_session(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"


def _visitor(user) -> Visitor:
    return Visitor(user=user, visitor_id="")


@sync_to_async
def _room(members: int = 1, presence_enabled: bool = True) -> SimpleNamespace:
    users = get_user_model()
    tag = uuid.uuid4().hex[:6]
    owner = users.objects.create_user(f"ana-{tag}", password="x")  # noqa: S106
    conversation = Conversation.objects.create(
        user=owner, provider="demo", model="demo", presence_enabled=presence_enabled
    )
    people = [owner]
    if members:
        # As people join a room: the owner's invite link, each member opening it.
        invite = sharing.invite_create(visitor=_visitor(owner), conversation_id=conversation.pk)
    for n in range(members):
        member = users.objects.create_user(f"bo{n}-{tag}", password="x")  # noqa: S106
        sharing.invite_join(visitor=_visitor(member), token=invite.token)
        people.append(member)
    return SimpleNamespace(
        conversation=conversation,
        id=str(conversation.pk),
        people=people,
        owner=owner,
        member=people[1] if members else None,
        cookies=[_user_session(p) for p in people],
    )


@pytest.fixture
def shared_room():
    """`await shared_room(members=1, presence_enabled=True)`: a conversation its owner shares
    (`.owner`, `.member`, `.people`, `.cookies` in the same order, `.id`)."""
    return _room


async def _open(
    cookie: str, conversation_id: str | None = None, client: str = "", application=None
):
    if application is None:
        from chatsite.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"cookie", cookie.encode()),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected
    if conversation_id:
        await _frame(communicator, action="join", conversation=conversation_id, client=client)
    return communicator


async def _frame(communicator, **frame):
    await communicator.send_to(text_data=json.dumps({**frame, "headers": {"HX-Request": "true"}}))


async def _frames_until(communicator, needle: str, timeout: float = 5) -> list[str]:
    """Frames up to and including the first that contains `needle`."""
    seen = []
    while True:
        frame = await communicator.receive_from(timeout)
        seen.append(frame)
        if needle in frame:
            return seen


async def _enter_all(room: SimpleNamespace, count: int | None = None) -> list:
    """The room's people enter one after the other, each once everyone before them has heard
    of them (so no test reads a join that raced another's)."""
    sockets: list = []
    for person, cookie in list(zip(room.people, room.cookies, strict=True))[:count]:
        socket = await _open(cookie, room.id)
        for s in [*sockets, socket]:
            await _frames_until(s, f"{person.username} joined")
        sockets.append(socket)
    return sockets


@pytest.fixture
def room_socket() -> SimpleNamespace:
    """`open(cookie, conversation_id, application=...)` a socket joined to the room (through
    the given ASGI application, the site's by default); `enter_all(room, count)`
    its people's sockets, in order, every join heard; `frame(socket, **frame)`;
    `until(socket, needle)` the frames up to one that contains it; `leaves_done()`."""
    return SimpleNamespace(
        open=_open,
        enter_all=_enter_all,
        frame=_frame,
        until=_frames_until,
        leaves_done=leave_checks_done,
    )


@sync_to_async
def _new_user_cookie(name: str) -> str:
    user = get_user_model().objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}", password="x")  # noqa: S106
    return _user_session(user)


@pytest.fixture
def session_cookie():
    """`await session_cookie(name)`: the session cookie of a new signed-in user."""
    return _new_user_cookie
