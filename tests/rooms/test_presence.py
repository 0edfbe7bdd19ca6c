"""Who is here and who is typing, through the channel layer's groups: on the in-memory layer
and on channels-redis (presence in Redis), driven with WebsocketCommunicator on the real ASGI
application."""

from __future__ import annotations

import asyncio
import time

import pytest

from chat.rooms.layer import get_layer, room_group
from chat.rooms.presence import LEAVE_DEBOUNCE_SECONDS, presence_list

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def layer(request):
    if request.param == "redis":
        request.getfixturevalue("room_redis")
    return request.param


async def test_a_member_who_comes_in_is_announced_with_who_is_here(layer, shared_room, room_socket):
    room = await shared_room()
    owner = await room_socket.open(room.cookies[0], room.id)
    first = await room_socket.until(owner, 'id="room-presence"')
    assert f"{room.owner.username} joined" in first[-1]

    member = await room_socket.open(room.cookies[1], room.id)
    seen = (await room_socket.until(owner, f"{room.member.username} joined"))[-1]
    # Chips with initials and the accessible names of both, and the announcement.
    assert seen.count('class="presence-chip') == 2
    assert f'<span class="visually-hidden">{room.member.username}</span>' in seen
    assert 'aria-live="polite"' in seen
    names = {p.name for p in await presence_list(room_group(room.id))}
    assert names == {room.owner.username, room.member.username}
    await member.disconnect()
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_a_flapping_connection_is_announced_neither_as_leaving_nor_as_joining(
    layer, shared_room, room_socket
):
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)

    await member.disconnect()  # a reload, a blip: back within the debounce
    await asyncio.sleep(0.3)
    member = await room_socket.open(room.cookies[1], room.id)
    await asyncio.sleep(LEAVE_DEBOUNCE_SECONDS + 0.6)
    assert await owner.receive_nothing(0.2), "neither 'left' nor 'joined' was said"

    # A real leave is said once the debounce has passed, and only then.
    await member.disconnect()
    started = time.monotonic()
    left = (await room_socket.until(owner, f"{room.member.username} left", timeout=8))[-1]
    assert time.monotonic() - started >= LEAVE_DEBOUNCE_SECONDS - 0.1
    assert left.count('class="presence-chip') == 1
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_typing_reaches_the_others_never_the_typist_and_is_throttled(
    layer, shared_room, room_socket
):
    room = await shared_room(members=2)
    sockets = await room_socket.enter_all(room)

    typist = sockets[1]
    for _ in range(5):  # a burst: relayed once
        await room_socket.frame(typist, action="typing", conversation=room.id)
    for other in (sockets[0], sockets[2]):
        frame = (await room_socket.until(other, "is typing"))[-1]
        assert f"{room.member.username} is typing…" in frame
        assert await other.receive_nothing(0.3), "the burst was relayed once"
    assert await typist.receive_nothing(0.3), "the typist never sees themselves typing"
    for s in sockets:
        await s.disconnect()
    await room_socket.leaves_done()


async def test_one_change_is_one_group_message_and_one_frame_per_connection(
    shared_room, room_socket, monkeypatch
):
    room = await shared_room(members=3)
    sockets = await room_socket.enter_all(room, 3)
    layer = get_layer()
    sent = []
    original = layer.group_send

    async def counted(group, message):
        sent.append(message["type"])
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counted)
    late = await room_socket.open(room.cookies[3], room.id)
    for s in [*sockets, late]:
        await room_socket.until(s, f"{room.people[3].username} joined")
    await room_socket.frame(sockets[1], action="typing", conversation=room.id)
    for s in (sockets[0], sockets[2], late):
        await room_socket.until(s, "is typing")
    # A join and a typing: one group message each, whatever the room's size (the layer hands
    # each connection its copy: O(members)); no list of everyone on the site.
    assert sent == ["room.presence", "room.typing"]
    for s in [*sockets, late]:
        await s.disconnect()
    await room_socket.leaves_done()


@pytest.mark.parametrize("switch", ["setting", "conversation"])
async def test_with_presence_off_nothing_is_sent_or_stored(
    switch, settings, shared_room, room_socket, monkeypatch
):
    if switch == "setting":
        settings.CHAT_PRESENCE = False
    room = await shared_room(presence_enabled=switch != "conversation")
    layer = get_layer()
    sent = []
    original = layer.group_send

    async def counted(group, message):
        sent.append(message["type"])
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counted)
    owner = await room_socket.open(room.cookies[0], room.id)
    member = await room_socket.open(room.cookies[1], room.id)
    await room_socket.frame(member, action="typing", conversation=room.id)
    assert await owner.receive_nothing(0.5)
    assert await presence_list(room_group(room.id)) == []
    await member.disconnect()
    await asyncio.sleep(0.1)
    assert sent == []
    assert await presence_list(room_group(room.id)) == []
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_only_members_may_enter_a_room(shared_room, room_socket, session_cookie):
    room = await shared_room()
    stranger = await session_cookie("eve")
    owner = await room_socket.open(room.cookies[0], room.id)
    await room_socket.until(owner, "joined")
    socket = await room_socket.open(stranger, room.id)
    assert "Not found." in await socket.receive_from(5)
    await room_socket.frame(socket, action="typing", conversation=room.id)
    assert await owner.receive_nothing(0.3)
    assert len(await presence_list(room_group(room.id))) == 1
    await socket.disconnect()
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_a_socket_closed_while_a_frame_was_on_its_way_leaves_the_room(
    layer, shared_room, room_socket
):
    # Under Daphne, a frame sent to a WebSocket whose client has just closed raises (autobahn's
    # Disconnected) until the consumer handles the disconnect. Raised from a room handler, it
    # ended the consumer without its `disconnect`: the person stayed "here" for good, their
    # heartbeat beating on (one in about 100 comings and goings in benchmarks/room_fanout.py).
    # The race cannot be timed on a real server, so the application's `send` here raises as
    # Daphne's does once the client is gone.
    from autobahn.exception import Disconnected

    from chatsite.asgi import application

    client_gone, refused = False, asyncio.Event()

    async def as_under_daphne(scope, receive, send):
        async def daphne_send(message):
            if client_gone and message["type"] == "websocket.send":
                refused.set()
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        await application(scope, receive, daphne_send)

    room = await shared_room()
    (owner,) = await room_socket.enter_all(room, 1)
    member = await room_socket.open(room.cookies[1], room.id, application=as_under_daphne)
    await room_socket.until(owner, f"{room.member.username} joined")

    client_gone = True
    await room_socket.frame(owner, action="typing", conversation=room.id)
    await asyncio.wait_for(refused.wait(), 5)
    await member.disconnect()  # Daphne's websocket.disconnect, which now reaches the consumer
    await room_socket.until(owner, f"{room.member.username} left", timeout=8)
    assert [p.name for p in await presence_list(room_group(room.id))] == [room.owner.username]
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_room_events_reach_a_socket_without_a_hop_to_its_database_thread(
    shared_room, room_socket, monkeypatch
):
    # Channels closes stale database connections on a consumer's own thread before each message
    # it dispatches, a hop to that thread. Room events do no database work there; the hop was
    # ~15 % of the server's CPU while people came and went (benchmarks/room_fanout.py).
    import channels.consumer

    hops = []
    close_old = channels.consumer.aclose_old_connections

    async def counted():
        hops.append("hop")
        await close_old()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)
    hops.clear()
    await room_socket.frame(member, action="typing", conversation=room.id)
    await room_socket.until(owner, "is typing")
    assert hops == ["hop"]  # the member's frame; not the room's event on the owner's socket
    await owner.disconnect()
    await member.disconnect()
    await room_socket.leaves_done()
