"""Who is here and who is typing, through the channel layer's groups: on the in-memory layer
and on channels-redis (presence in Redis), driven with WebsocketCommunicator on the real ASGI
application."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from chat.conversations import sharing
from chat.conversations.reads import Visitor
from chat.models import Conversation
from chat.rooms.layer import get_layer, room_group
from chat.rooms.presence import LEAVE_DEBOUNCE_SECONDS, presence_list, presence_store

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
    sent = _count_group_sends(monkeypatch)
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
    sent = _count_group_sends(monkeypatch)
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


# --- The owner's switch (Share…, "Show who is here and who is typing") -----------------------


@sync_to_async
def _switch(room, *, enabled: bool) -> None:
    # The owner's real write: the flag, then `presence_switched` on commit, which the rooms'
    # receiver turns into the room's event (and, off, drops what is stored).
    owner = Visitor(user=room.owner, visitor_id="")
    sharing.presence_set(visitor=owner, conversation_id=room.id, enabled=enabled)


async def _stored(room) -> list[str]:
    """Every entry the presence store holds for the room, expired or not."""
    return await presence_store().entries(room_group(room.id), now=0)


def _count_group_sends(monkeypatch) -> list[str]:
    layer = get_layer()
    sent: list[str] = []
    original = layer.group_send

    async def counted(group, message):
        sent.append(message["type"])
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counted)
    return sent


EMPTY_CHIPS = (
    '<ul id="room-presence" class="presence" aria-label="Here now" hx-swap-oob="true"></ul>'
)


async def _sse_until(stream, needle: str) -> str:
    while needle not in (data := (await stream.event()).get("data", "")):
        pass
    return data


async def test_switched_off_every_page_is_told_and_nothing_is_sent_or_stored_after(
    layer, shared_room, room_socket, sse_stream, monkeypatch
):
    room = await shared_room(members=2)
    owner, member = await room_socket.enter_all(room, 2)
    # The second member's page is on the SSE fallback: the room's event stream.
    stream = sse_stream(f"/streaming-demo/c/{room.id}/room?client=x", room.cookies[2])
    assert (await stream.open())["status"] == 200
    for socket in (owner, member):
        await room_socket.until(socket, f"{room.people[2].username} joined")
    assert len(await _stored(room)) == 3
    sent = _count_group_sends(monkeypatch)

    await _switch(room, enabled=False)

    # Every page hears it: the chips and the typing line emptied, the header says so.
    for socket in (owner, member):
        told = (await room_socket.until(socket, "Presence is off"))[-1]
        assert EMPTY_CHIPS in told
        assert '<p id="room-typing" class="typing" hx-swap-oob="true"></p>' in told
    assert 'data-presence="off"' in await _sse_until(stream, "Presence is off")
    assert await _stored(room) == []

    # From now on: typing is ignored, a leave and a return are neither said nor stored.
    await room_socket.frame(member, action="typing", conversation=room.id)
    await member.disconnect()
    await room_socket.leaves_done()
    member = await room_socket.open(room.cookies[1], room.id)
    await room_socket.frame(member, action="typing", conversation=room.id)
    assert await owner.receive_nothing(LEAVE_DEBOUNCE_SECONDS + 0.5)
    assert await member.receive_nothing(0.2)
    assert await stream.app.receive_nothing(0.2)
    assert sent == ["room.presence_switch"]
    assert await _stored(room) == []
    await stream.close()
    for socket in (owner, member):
        await socket.disconnect()
    await room_socket.leaves_done()
    assert await _stored(room) == []


def _chips(frame: str) -> int:
    return frame.count('class="presence-chip')


async def test_switched_back_on_everyone_here_shows_again_without_a_reload(
    layer, shared_room, room_socket, sse_stream
):
    room = await shared_room(members=2)
    owner, member = await room_socket.enter_all(room, 2)
    stream = sse_stream(f"/streaming-demo/c/{room.id}/room?client=x", room.cookies[2])
    assert (await stream.open())["status"] == 200
    for socket in (owner, member):
        await room_socket.until(socket, f"{room.people[2].username} joined")
    await _switch(room, enabled=False)
    for socket in (owner, member):
        await room_socket.until(socket, "Presence is off")
    await _sse_until(stream, "Presence is off")

    await _switch(room, enabled=True)

    # Each page is told, and the chips of all three come back (each connection says it is here
    # again, without a "joined": nobody came).
    for socket in (owner, member):
        frames = await room_socket.until(socket, 'data-presence="on"')
        while _chips(frames[-1]) < 3:
            frames.append(await socket.receive_from(5))
        assert not any("joined" in frame for frame in frames)
    while _chips(await _sse_until(stream, "presence-chip")) < 3:
        pass
    assert len(await _stored(room)) == 3
    # And presence works again as before: typing reaches the others.
    await room_socket.frame(member, action="typing", conversation=room.id)
    assert f"{room.member.username} is typing" in (await room_socket.until(owner, "is typing"))[-1]
    await stream.close()
    for socket in (owner, member):
        await socket.disconnect()
    await room_socket.leaves_done()


async def test_a_page_that_missed_the_switch_follows_it_at_its_next_heartbeat(
    layer, shared_room, room_socket, monkeypatch
):
    # As if Redis had been unreachable when the owner switched: the flag changed, nobody heard.
    monkeypatch.setattr("chat.web.consumers.HEARTBEAT_SECONDS", 0.2)
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)
    await Conversation.objects.filter(pk=room.id).aupdate(presence_enabled=False)

    for socket in (owner, member):
        await room_socket.until(socket, "Presence is off")
    assert await _stored(room) == []
    await Conversation.objects.filter(pk=room.id).aupdate(presence_enabled=True)
    for socket in (owner, member):
        frames = await room_socket.until(socket, 'data-presence="on"')
        while _chips(frames[-1]) < 2:
            frames.append(await socket.receive_from(5))
    assert len(await _stored(room)) == 2
    for socket in (owner, member):
        await socket.disconnect()
    await room_socket.leaves_done()


async def test_a_room_stream_beats_on_time_in_a_busy_room(
    layer, shared_room, sse_stream, monkeypatch
):
    """The SSE room stream beat only after a heartbeat's time without events: in a room where
    someone is always typing it never beat, and its person was said to have left once the entry
    expired, though their page was open."""
    from chat.rooms.connection import RoomConnection
    from chat.rooms.events import TYPING

    monkeypatch.setattr("chat.rooms.readers.HEARTBEAT_SECONDS", 0.4)
    beats = []
    real_beat = RoomConnection.beat

    async def counted(self):
        beats.append(self.user_id)
        await real_beat(self)

    monkeypatch.setattr(RoomConnection, "beat", counted)
    room = await shared_room()
    stream = sse_stream(f"/streaming-demo/c/{room.id}/room?client=x", room.cookies[1])
    assert (await stream.open())["status"] == 200
    typing = {"type": TYPING, "conversation": room.id, "user_id": room.owner.pk, "name": "ana"}
    for _ in range(20):  # 2 s of someone typing, an event every 0.1 s
        await get_layer().group_send(room_group(room.id), typing)
        await asyncio.sleep(0.1)
        while await stream.app.receive_nothing(0) is False:
            await stream.app.receive_output(0.1)
    assert beats.count(room.member.pk) >= 3
    await stream.close()


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
