from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chat.models import Message
from chat.providers.demo import demo_reply
from chat.replies.registry import live_jobs
from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_then_watch_streams_escaped_fragments_and_the_final_message(
    settings, anonymous_session, chat_socket
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 300
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    prompt = "<b>bold?</b> & more"

    message_id = await chat_socket.start_reply(communicator, prompt)
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    pieces, final = await chat_socket.read_reply(communicator)

    assert len(pieces) > 1, "the reply arrives in several fragments"
    seqs = [seq for seq, _ in pieces]
    assert seqs == sorted(set(seqs))
    assert "".join(text for _, text in pieces) == demo_reply(prompt)
    assert f'id="msg-{message_id}"' in final and 'data-status="complete"' in final
    assert 'id="conversation-totals"' in final
    await communicator.disconnect()


async def test_the_socket_that_sent_gets_the_reply_without_waiting_for_its_watch(
    settings, anonymous_session, chat_socket, deltas
):
    # The first token is not held up by the page's watch round trip; the watch the page then
    # sends finds the reply followed and sends nothing twice.
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 300
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "no watch needed")
    first = deltas(await communicator.receive_from(5))  # before any watch
    assert first, "text arrives without a watch"

    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    pieces, final = await chat_socket.read_reply(communicator)

    seqs = [seq for seq, _ in first + pieces]
    assert seqs == sorted(set(seqs)), "nothing sent twice"
    assert "".join(text for _, text in first + pieces) == demo_reply("no watch needed")
    assert 'data-status="complete"' in final
    await communicator.disconnect()


async def test_the_pages_watch_of_the_reply_its_socket_follows_reads_nothing(
    settings, monkeypatch, anonymous_session, chat_socket
):
    # The page watches every streaming reply it shows, the one this socket sent included: that
    # socket already follows it, so the watch costs no database read.
    from chat.web import consumers

    checked: list[int] = []
    real_message_get = consumers.message_get

    def counting_message_get(visitor, message_id):
        checked.append(message_id)
        return real_message_get(visitor, message_id)

    monkeypatch.setattr(consumers, "message_get", counting_message_get)
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 300
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "watched twice")
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    pieces, final = await chat_socket.read_reply(communicator)
    await chat_socket.send(
        communicator, action="watch", message_id=message_id, after=0
    )  # after its end

    assert "".join(text for _, text in pieces) == demo_reply("watched twice")
    assert 'data-status="complete"' in final
    assert checked == []
    # Another socket of the same visitor (a reload) has not followed it: it checks.
    other = await chat_socket.connect(cookie)
    await chat_socket.send(other, action="watch", message_id=message_id, after=0)
    assert 'data-status="complete"' in await other.receive_from(5)
    assert checked == [message_id]
    await communicator.disconnect()
    await other.disconnect()


async def test_tokens_are_html_escaped_on_the_wire(settings, anonymous_session, chat_socket):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 300
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)

    message_id = await chat_socket.start_reply(communicator, "<script>alert(1)</script>")
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    raw = []
    while True:
        frame = await communicator.receive_from(5)
        raw.append(frame)
        if "<article" in frame:
            break

    streamed = "".join(raw[:-1])
    assert "&lt;script&gt;" in streamed
    assert "<script>" not in streamed
    await communicator.disconnect()


async def test_watching_a_finished_reply_sends_the_final_message_at_once(
    settings, anonymous_session, chat_socket
):
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "finished already")
    await communicator.disconnect()
    message = await Message.objects.aget(pk=message_id)
    while message.status == Message.Status.STREAMING:
        await asyncio.sleep(0.02)
        message = await Message.objects.aget(pk=message_id)

    # A page that was open during the reply reconnects after it ended.
    again = await chat_socket.connect(cookie)
    await chat_socket.send(again, action="watch", message_id=message_id, after=10)
    frame = await again.receive_from(5)

    assert 'data-status="complete"' in frame
    assert "<span data-seq" not in frame
    await again.disconnect()


async def test_resume_mid_stream_gets_exactly_the_rest(
    settings, anonymous_session, chat_socket, deltas
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 60
    cookie, _ = await anonymous_session()
    first = await chat_socket.connect(cookie)
    prompt = "resume mid stream"
    message_id = await chat_socket.start_reply(first, prompt)
    await chat_socket.send(first, action="watch", message_id=message_id, after=0)
    seen: list[tuple[int, str]] = []
    while sum(len(t) for _, t in seen) < 40:
        seen += deltas(await first.receive_from(5))
    await first.disconnect()  # the tab closes; the reply goes on

    second = await chat_socket.connect(cookie)
    last_seq = seen[-1][0]
    await chat_socket.send(second, action="watch", message_id=message_id, after=last_seq)
    rest, final = await chat_socket.read_reply(second)
    await second.disconnect()

    assert rest and rest[0][0] > last_seq
    assert "".join(t for _, t in seen) + "".join(t for _, t in rest) == demo_reply(prompt)
    assert 'data-status="complete"' in final


async def test_stop_over_the_socket_keeps_the_partial_text(
    settings, anonymous_session, chat_socket
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "stop me")
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    await communicator.receive_from(5)
    message = await Message.objects.select_related("conversation").aget(pk=message_id)

    await chat_socket.send(communicator, action="stop", conversation=str(message.conversation_id))
    pieces, final = await chat_socket.read_reply(communicator, timeout=2)

    saved = await Message.objects.aget(pk=message_id)
    assert 'data-status="stopped"' in final and "Stopped by user" in final
    assert saved.ended_reason == Message.EndedReason.STOPPED
    assert saved.content and demo_reply("stop me").startswith(saved.content)
    await communicator.disconnect()


async def test_bad_input_is_answered_with_an_error_fragment(
    settings, anonymous_session, chat_socket
):
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)

    await chat_socket.send(
        communicator, action="send", message="", model="demo:demo", conversation=""
    )
    frame = await communicator.receive_from(5)

    assert 'id="composer-error"' in frame and "Type a message first." in frame
    assert not await Message.objects.aexists()
    await communicator.disconnect()


async def test_someone_elses_reply_is_not_found(settings, anonymous_session, chat_socket):
    owner_cookie, _ = await anonymous_session()
    owner = await chat_socket.connect(owner_cookie)
    message_id = await chat_socket.start_reply(owner, "private")
    message = await Message.objects.aget(pk=message_id)
    await owner.disconnect()

    intruder_cookie, _ = await anonymous_session()
    intruder = await chat_socket.connect(intruder_cookie)
    await chat_socket.send(intruder, action="watch", message_id=message_id, after=0)
    frame = await intruder.receive_from(5)
    assert "Not found." in frame and "private" not in frame

    await chat_socket.send(intruder, action="stop", conversation=str(message.conversation_id))
    assert "Not found." in await intruder.receive_from(5)

    await chat_socket.send(
        intruder,
        action="send",
        message="hi",
        model="demo:demo",
        conversation=str(message.conversation_id),
    )
    assert "Not found." in await intruder.receive_from(5)
    await intruder.disconnect()
    assert await Message.objects.filter(conversation_id=message.conversation_id).acount() == 2


async def test_foreign_origins_are_refused():
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"http://evil.example")],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_sign_in_can_be_required(settings, anonymous_session, chat_socket):
    settings.CHAT_REQUIRE_LOGIN = True
    cookie, _ = await anonymous_session()
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"host", b"127.0.0.1:8000"), chat_socket.ORIGIN, (b"cookie", cookie.encode())],
    )
    connected, code = await communicator.connect()
    assert not connected and code == 4401


async def test_a_reply_whose_worker_died_is_shown_as_interrupted(
    settings, anonymous_session, chat_socket
):
    cookie, visitor_id = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    # A reply left streaming by a worker that died: no job, an old heartbeat, some saved text.
    message_id = await chat_socket.start_reply(communicator, "crash")
    await asyncio.gather(*live_jobs())
    await Message.objects.filter(pk=message_id).aupdate(
        status=Message.Status.STREAMING,
        ended_reason="",
        content="saved before the crash",
        heartbeat_at=timezone.now() - timedelta(minutes=2),
    )

    await communicator.disconnect()

    # The visitor comes back (a reload: a new socket) and the page asks to follow the reply.
    again = await chat_socket.connect(cookie)
    await chat_socket.send(again, action="watch", message_id=message_id, after=3)
    frame = await again.receive_from(5)

    assert 'data-status="error"' in frame and "Interrupted" in frame
    assert "saved before the crash" in frame
    await again.disconnect()


# --- Hostile frames (issue 7) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"action": "watch", "message_id": 1e400, "after": 0}',
        '{"action": "watch", "message_id": 1, "after": 1e400}',
        '{"action": "watch", "message_id": 99999999999999999999999999999, "after": 0}',
        '{"action": "watch", "message_id": [1], "after": {"a": 1}}',
        '{"action": "watch", "message_id": "-1", "after": "NaN"}',
        '{"action": "stop", "conversation": {"id": 1}}',
        '{"action": "send", "message": {"nested": true}, "model": "demo:demo"}',
        '{"action": "send", "message": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"action": ["send"]}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
async def test_absurd_frames_get_an_error_fragment_and_the_socket_stays_open(
    raw, caplog, anonymous_session, chat_socket
):
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    await communicator.send_to(text_data=raw)
    frame = await communicator.receive_from(5)
    assert 'id="composer-error"' in frame
    # Still open and useful: a normal send works on the same socket.
    await chat_socket.start_reply(communicator, "still here")
    await communicator.disconnect()
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


async def test_watching_a_finished_reply_twice_on_one_socket_sends_it_once(
    anonymous_session, chat_socket
):
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "once")
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    await chat_socket.read_reply(communicator)
    for _ in range(5):
        await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    assert await communicator.receive_nothing(0.5)
    await communicator.disconnect()


async def test_watch_frames_are_rate_limited_per_socket(settings, anonymous_session, chat_socket):
    settings.CHAT_WATCH_RATE_PER_MINUTE = 3
    cookie, _ = await anonymous_session()
    communicator = await chat_socket.connect(cookie)
    message_id = await chat_socket.start_reply(communicator, "watched")
    for _ in range(3):
        await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    await chat_socket.read_reply(communicator)
    await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
    frame = await communicator.receive_from(5)
    while "Too many requests" not in frame:
        # A reader replaced mid-send may have delivered the finished reply too.
        assert "<article" in frame, frame
        frame = await communicator.receive_from(5)
    await communicator.disconnect()


async def test_readers_per_visitor_are_capped(settings, anonymous_session, chat_socket):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 2  # stays streaming while we watch
    settings.CHAT_MAX_READERS_PER_PERSON = 2
    cookie, _ = await anonymous_session()
    sockets = [await chat_socket.connect(cookie) for _ in range(3)]
    message_id = await chat_socket.start_reply(sockets[0], "many readers")
    for communicator in sockets[:2]:
        await chat_socket.send(communicator, action="watch", message_id=message_id, after=0)
        await communicator.receive_from(5)  # the first fragment: it is reading
    await chat_socket.send(sockets[2], action="watch", message_id=message_id, after=0)
    frame = await sockets[2].receive_from(5)
    assert "Too many open streams" in frame
    await sockets[0].disconnect()  # gives its slot back
    await asyncio.sleep(0.1)
    await chat_socket.send(sockets[2], action="watch", message_id=message_id, after=0)
    assert "data-seq" in await sockets[2].receive_from(5)
    await chat_socket.send(
        sockets[2],
        action="stop",
        conversation=str(
            (
                await Message.objects.select_related("conversation").aget(pk=message_id)
            ).conversation_id
        ),
    )
    for communicator in sockets[1:]:
        await communicator.disconnect()
