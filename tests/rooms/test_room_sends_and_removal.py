"""A member's send reaches every page of the room, and a removal takes effect at once: the
removed person's socket is told and closed (4403), their room stream and their reply streams
of the conversation end."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from chat.conversations import sharing
from chat.conversations.reads import Visitor
from chat.providers.demo import demo_reply
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

STREAMING = re.compile(r'data-role="assistant" data-status="streaming" data-message-id="(\d+)"')


async def test_a_members_send_shows_its_author_and_streams_to_the_owners_page(
    settings, shared_room, room_socket, deltas
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 200
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)  # one after the other: no join races

    await room_socket.frame(
        member, action="send", message="hello room", model="demo:demo", conversation=room.id
    )
    started = (await room_socket.until(owner, "hello room"))[-1]
    assert f'<p class="msg-author">{room.member.username}</p>' in started
    assert f'aria-label="{room.member.username}"' in started
    # The sender's own page says "You" on their bubble at once, as after a reload.
    own = (await room_socket.until(member, "hello room"))[-1]
    assert '<p class="msg-author">You</p>' in own
    reply_id = int(STREAMING.search(started).group(1))
    # The owner's socket follows the reply from its stream, without asking: the same text.
    pieces, final = [], ""
    while not final:
        frame = await owner.receive_from(5)
        if _final(frame, reply_id):
            final = frame
        else:
            pieces += deltas(frame)
    assert "".join(text for _, text in pieces) == demo_reply("hello room")
    for job in live_jobs():
        await job
    await owner.disconnect()
    await member.disconnect()
    await room_socket.leaves_done()


def _final(frame: str, reply_id: int) -> bool:
    return f'id="msg-{reply_id}"' in frame and 'hx-swap-oob="outerHTML"' in frame


@sync_to_async
def _remove(how: str, room) -> None:
    # The owner's real writes: the membership goes, then `member_removed` or `sharing_stopped`
    # on commit, which the rooms' receivers turn into the room's removal event.
    owner = Visitor(user=room.owner, visitor_id="")
    if how == "remove":
        sharing.member_remove(visitor=owner, conversation_id=room.id, user_id=room.member.pk)
    else:
        sharing.sharing_stop(visitor=owner, conversation_id=room.id)


@pytest.mark.parametrize("how", ["remove", "stop sharing"])
async def test_removal_closes_the_members_socket_and_ends_their_sse_streams(
    settings, shared_room, room_socket, sse_stream, how
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 5  # a reply that is still streaming when removed
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)  # one after the other: no join races
    await room_socket.frame(
        owner, action="send", message="a long one", model="demo:demo", conversation=room.id
    )
    reply_id = int(STREAMING.search((await room_socket.until(member, "a long one"))[-1]).group(1))

    room_stream = sse_stream(f"/streaming-demo/c/{room.id}/room?client=x", room.cookies[1])
    assert (await room_stream.open())["status"] == 200
    assert "retry" in await room_stream.event()
    reply_stream = sse_stream(f"/streaming-demo/replies/{reply_id}/events", room.cookies[1])
    assert (await reply_stream.open())["status"] == 200
    await reply_stream.event()

    await _remove(how, room)

    told = (await room_socket.until(member, "no longer a member"))[-1]
    assert 'id="composer-error"' in told
    closed = await member.receive_output(5)
    while closed["type"] != "websocket.close":
        closed = await member.receive_output(5)
    assert closed["code"] == 4403  # not in hx-ws's reconnect list
    # The room stream says so and ends; the reply's stream ends without its end.
    events = []
    while (event := await room_stream.event()) != {}:
        events.append(event)
    assert any(e.get("event") == "removed" for e in events)
    while (event := await reply_stream.event()) != {}:
        assert 'data-status="complete"' not in event.get("data", "")
    for job in live_jobs():
        job.cancel()
    await owner.disconnect()
    await room_socket.leaves_done()


async def test_the_room_stream_is_for_members_only(shared_room, sse_stream, session_cookie):
    room = await shared_room()
    stranger = await session_cookie("eve")
    stream = sse_stream(f"/streaming-demo/c/{room.id}/room", stranger)
    assert (await stream.open())["status"] == 404


async def test_a_send_reaches_each_member_for_one_query_and_one_shared_render(
    settings, shared_room, room_socket, statements, room_renders
):
    # Each member's socket checks that its person may see the new reply (one query: their
    # membership); the bubbles are read and rendered once in this process for all of them. A
    # room of 50 read and rendered them 50 times, one after another on the database threads:
    # the last member's reply began ~0.3 s after the first's (benchmarks/room_fanout.py).
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 100
    settings.CHAT_WORKER_DEAD_AFTER_SECONDS = 3600  # no heartbeat or reaper in the count
    room = await shared_room(members=4)
    sockets = await room_socket.enter_all(room)
    before = len(statements)
    await room_socket.frame(
        sockets[0], action="send", message="hello room", model="demo:demo", conversation=room.id
    )
    for member in sockets[1:]:
        await room_socket.until(member, "hello room")
    for job in live_jobs():
        await job
    # What came after the send's own writes (on PostgreSQL a send starts on the database
    # threads too, and its reads come before its INSERTs; on SQLite it runs on the writer).
    sent = statements[before:]
    inserts = [i for i, (_, sql) in enumerate(sent) if sql.startswith('INSERT INTO "chat_message"')]
    after_send = sent[inserts[-1] + 1 :]
    on_reply_threads = [sql for thread, sql in after_send if thread.startswith("reply-db")]
    memberships = [sql for sql in on_reply_threads if "chat_conversationmember" in sql]
    rows = [sql for sql in on_reply_threads if re.search(r'FROM "(chat_message|auth_user)"', sql)]
    # One per member; and the owner's own page asks once whether the conversation is shared
    # (its bubbles then say who wrote them, "You" on hers).
    assert len(memberships) == (len(sockets) - 1) + 1
    # The reply with its conversation, the question, the question's author.
    assert len(rows) == 3, "\n".join(rows)
    assert room_renders.count("chat/partials/_room_started.html") == 1
    for s in sockets:
        await s.disconnect()
    await room_socket.leaves_done()


async def test_the_senders_other_tab_shows_their_message_as_theirs(
    settings, shared_room, room_socket
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 200
    room = await shared_room()
    owner, member = await room_socket.enter_all(room)
    other_tab = await room_socket.open(room.cookies[1], room.id)
    await room_socket.until(other_tab, "room-presence")

    await room_socket.frame(
        member, action="send", message="hello room", model="demo:demo", conversation=room.id
    )
    on_owner = (await room_socket.until(owner, "hello room"))[-1]
    on_other_tab = (await room_socket.until(other_tab, "hello room"))[-1]
    assert f'<p class="msg-author">{room.member.username}</p>' in on_owner
    assert '<p class="msg-author">You</p>' in on_other_tab
    for job in live_jobs():
        await job
    for s in (owner, member, other_tab):
        await s.disconnect()
    await room_socket.leaves_done()
