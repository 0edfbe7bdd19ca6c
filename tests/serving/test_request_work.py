"""What a request, a socket and a reply cost the server beyond their own work: thread starts,
thread hops and database connections (docs/performance.md, the second pass on the hot path).
Counted, not timed: each of these failed before the change it guards."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from asgiref.sync import SyncToAsync
from django.core.signals import request_started
from django.test import AsyncClient

from chat.models import Conversation, Message
from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


class _Threads:
    """The threads Django ran each request's synchronous work on (its request_started signal is
    sent from the request's thread)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, **kwargs: object) -> None:
        self.seen.append(threading.get_ident())


async def test_requests_one_after_another_reuse_one_thread(asgi_get):
    threads = _Threads()
    request_started.connect(threads)
    try:
        for _ in range(6):
            assert await asgi_get(application, "/healthz") == 200
    finally:
        request_started.disconnect(threads)

    # Without a kept thread, Django's per-request context starts (and joins) a new one each time.
    assert len(threads.seen) == 6
    assert len(set(threads.seen)) == 1


async def test_requests_in_flight_together_never_share_a_thread(asgi_get):
    threads = _Threads()
    request_started.connect(threads)
    try:
        statuses = await asyncio.gather(*(asgi_get(application, "/healthz") for _ in range(4)))
    finally:
        request_started.disconnect(threads)

    assert statuses == [200] * 4
    # One slow request must not hold up another (django/channels#2132): one thread each.
    assert len(set(threads.seen)) == 4


async def test_a_request_hops_to_a_thread_only_where_it_may_block(monkeypatch, asgi_get):
    hops: list[str] = []
    original = SyncToAsync.__call__

    async def counted(self: SyncToAsync, *args: object, **kwargs: object) -> object:
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    assert await asgi_get(application, "/healthz") == 200

    # Left: the request signals, the messages middleware (its storage may read the session),
    # CSRF's view hook, and closing the response. Each Django middleware hook used to hop too:
    # about 17 hops for this view.
    assert len(hops) <= 6, hops
    assert not [hop for hop in hops if "Security" in hop or "Common" in hop or "CSP" in hop]


async def test_a_session_that_changed_is_still_saved(django_user_model):
    # The session middleware's response hook saves on a thread when the session changed (a
    # sign-in): the next request is signed in.
    await django_user_model.objects.acreate_user("ada", password="a long enough password")
    async_client = AsyncClient()
    await async_client.alogin(username="ada", password="a long enough password")
    response = await async_client.get("/streaming-demo")
    assert response.status_code == 200
    assert b"ada" in response.content


async def test_a_replys_reads_run_on_the_reply_database_threads(
    settings, monkeypatch, anonymous_session, chat_socket
):
    """The send's answer, the first liveness check, the finished message the job renders for its
    readers and another socket's watch read the database on the shared reply threads, which
    keep their connections. On the socket's own thread, through `database_sync_to_async`, each
    call closed its connection afterwards (CONN_MAX_AGE = 0) and the next opened a new one: a
    file open and pragmas on SQLite, a login on PostgreSQL, two or three times per reply."""
    from chat.replies import delivery
    from chat.web import consumers, updates

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 400
    threads: dict[str, set[str]] = {}

    def spy(module: object, name: str) -> None:
        original = getattr(module, name)

        def recorded(*args: object) -> object:
            threads.setdefault(name, set()).add(threading.current_thread().name)
            return original(*args)

        monkeypatch.setattr(module, name, recorded)

    spy(consumers, "message_get")
    spy(consumers, "started_fragment")
    spy(updates, "final_fragment")
    spy(delivery, "reply_liveness")
    monkeypatch.setattr(delivery, "live_reply_ids", frozenset)  # so the check reads the database
    cookie, _ = await anonymous_session()
    socket = await chat_socket.connect(cookie)
    other = await chat_socket.connect(cookie)  # a second tab: its watch checks the reply is theirs
    try:
        for index in range(3):
            assert 'data-status="complete"' in await _ask(chat_socket, socket, f"question {index}")
        message_id = (
            await Message.objects.filter(role="assistant").values_list("pk", flat=True).alast()
        )
        await chat_socket.send(other, action="watch", message_id=message_id, after=0)
        assert 'data-status="complete"' in await other.receive_from(5)
    finally:
        await socket.disconnect()
        await other.disconnect()

    read = {"message_get", "started_fragment", "final_fragment", "reply_liveness"}
    assert set(threads) == read
    names = {name for seen in threads.values() for name in seen}
    assert all(name.startswith("reply-db") for name in names), threads


async def test_a_reply_of_this_process_is_known_alive_without_a_query(
    settings, monkeypatch, anonymous_session, chat_socket
):
    from chat.replies import delivery

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 400
    checked: list[int] = []
    original = delivery.reply_liveness
    monkeypatch.setattr(delivery, "reply_liveness", lambda pk: checked.append(pk) or original(pk))
    cookie, _ = await anonymous_session()
    socket = await chat_socket.connect(cookie)
    try:
        assert 'data-status="complete"' in await _ask(chat_socket, socket, "hello")
    finally:
        await socket.disconnect()

    # Its job runs here, so it is alive: the reader reads the stream, not the database.
    assert checked == []


async def test_starting_a_reply_counts_its_messages_as_a_recount_would(
    anonymous_session, chat_socket
):
    cookie, _ = await anonymous_session()
    socket = await chat_socket.connect(cookie)
    try:
        await _ask(chat_socket, socket, "first")
        first = await Conversation.objects.aget()
        await _ask(chat_socket, socket, "second", conversation=str(first.pk))
    finally:
        await socket.disconnect()

    conversation = await Conversation.objects.aget()
    stored = (conversation.message_count, conversation.ended_reasons)
    await asyncio.to_thread(_recount, conversation.pk)
    recounted = await Conversation.objects.aget()
    assert stored == (recounted.message_count, recounted.ended_reasons)
    assert (
        conversation.message_count
        == await Message.objects.filter(conversation=conversation).acount()
    )


async def _ask(chat_socket, socket: object, text: str, conversation: str = "") -> str:
    """Send, watch the new reply as the page does, and return its finished fragment."""
    await chat_socket.send(
        socket, action="send", message=text, model="demo:demo", conversation=conversation
    )
    started = await socket.receive_from(5)  # type: ignore[attr-defined]
    message_id = re.search(r'data-status="streaming" data-message-id="(\d+)"', started)
    assert message_id, started
    await chat_socket.send(socket, action="watch", message_id=int(message_id.group(1)), after=0)
    _pieces, final = await chat_socket.read_reply(socket)
    return final


def _recount(conversation_id: object) -> None:
    from django.db import connections

    try:
        Conversation.objects.get(pk=conversation_id).refresh_totals()
    finally:
        connections.close_all()
