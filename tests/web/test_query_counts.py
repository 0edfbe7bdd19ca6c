"""How many queries the hot paths cost, Zulip-style: a count that changes is a change to review.

Django's query capture (and pytest-django's `django_assert_num_queries`) sees one thread's
connection, and the reply path spreads its work over threads: the page (a sync view) runs on the
test's thread, but a send's start runs on the reply path's one writer thread (on SQLite; on
PostgreSQL on the database threads), a request's reads on the database threads (chat.db) and
an ending on the writer. So the sends, watches and endings are counted with `statements`, which
records every statement of every thread with the thread's name; the page with
`django_assert_num_queries`.

What each count consists of (SQLite, the suite's first run):

- A send to an existing conversation (the composer's htmx POST), 10 statements, all in the one
  transaction of the start on the writer thread: BEGIN IMMEDIATE; the conversation, read twice
  (is it the visitor's, then locked for the update); the replies streaming in it (none may) and
  whether one does for the visitor (the per-person cap); the conversation's current leaf (the
  new turn's parent); the conversation's title, model and updated_at; the question and the reply
  inserted; the message count and current leaf. The visitor comes from the signed cookie (no
  session read) and prices and caps from the staff-config cache.
- An ending (a reply finished by its job), 5 statements on the writer thread: BEGIN IMMEDIATE;
  the reply; its text, status and usage saved; the conversation's messages summed; the
  conversation's totals saved.
- The page of a conversation, 3 queries however many messages it has (2, 10 or 20), on the
  test's thread: the conversation; its messages (one query, the tree built in Python); the
  sidebar's conversations. (The visitor again comes from the signed cookie.)
- A watch (reading a reply's SSE events to its end, in-process through the ASGI application),
  2 queries on the database threads for 5 tokens as for 100: the session, and the reply (is it
  the visitor's, where does it stand). The text comes from the reply stream and the finished
  message with its end marker, never from the database; the reply being this process's own,
  its liveness costs no query on the reply database threads either.
"""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from chat.conversations.reads import Visitor
from chat.models import Conversation, Message
from chat.replies import start as services
from chat.replies import workers
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}
WRITER = "reply-writer"


@pytest.fixture(autouse=True)
def no_background_beats(settings):
    # The worker's heartbeat and reaper run on their own clock; they must not land in a count.
    settings.CHAT_WORKER_DEAD_AFTER_SECONDS = 3600


def _send(conversation_id: str, text: str) -> dict[str, str]:
    fields = {"action": "send", "message": text, "model": "demo:demo"}
    return {**fields, "conversation": conversation_id}


async def _conversation_with_a_finished_turn(async_client, apage_visitor) -> Conversation:
    await apage_visitor(async_client)
    response = await async_client.post(
        "/streaming-demo/messages", _send("", "First question"), headers=HTMX
    )
    assert response.status_code == 200
    await asyncio.gather(*live_jobs())
    await _sweeper_settled()
    return await Conversation.objects.aget()


async def _sweeper_settled() -> None:
    # The worker's first sweep (the reaper, yesterday's roll-up) runs through the writer when
    # the worker starts; asking the sweeper to look at a reply returns once that sweep is done.
    await workers.reap_soon(0)


async def test_a_send_to_a_conversation_costs_its_start_and_nothing_more(
    async_client, apage_visitor, statements, settings
):
    conversation = await _conversation_with_a_finished_turn(async_client, apage_visitor)
    # Slow enough that the job saves nothing before the POST has its answer.
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 2
    statements.clear()

    response = await async_client.post(
        "/streaming-demo/messages", _send(str(conversation.pk), "Second question"), headers=HTMX
    )
    # The request's reads run on the database threads (chat.db); the writes are what is
    # counted, and the send hands its job what it read.
    sent = [(thread, sql) for thread, sql in statements if not thread.startswith("reply-db")]
    for job in list(live_jobs()):
        job.cancel()
    await asyncio.gather(*live_jobs(), return_exceptions=True)

    assert response.status_code == 200
    if connection.vendor == "sqlite":
        assert [thread for thread, _ in sent] == [WRITER] * 10, sent
    else:
        # PostgreSQL: the start runs on the request's thread, in a transaction Django opens
        # without a statement of its own; the same reads and writes, no BEGIN IMMEDIATE.
        assert len(sent) <= 10, sent


async def test_an_ending_is_saved_in_one_transaction_of_five_statements(
    async_client, apage_visitor, statements, settings
):
    conversation = await _conversation_with_a_finished_turn(async_client, apage_visitor)
    settings.CHAT_FLUSH_SECONDS = 60  # no progress save: the ending carries the whole text
    statements.clear()
    await async_client.post(
        "/streaming-demo/messages", _send(str(conversation.pk), "Second question"), headers=HTMX
    )
    await asyncio.gather(*live_jobs())
    ending_at = next(
        i
        for i in range(len(statements) - 1, -1, -1)
        if statements[i][1].startswith(("BEGIN", 'SELECT "chat_message"."id"'))
        and statements[i][0] == WRITER
    )
    del ending_at  # the statements are asserted whole below, start and ending together

    reply = await Message.objects.filter(role="assistant").alast()
    assert reply.status == Message.Status.COMPLETE
    written = [sql for thread, sql in statements if thread == WRITER]
    if connection.vendor == "sqlite":
        # On the writer: the start (10) and the ending (5), nothing in between.
        assert len(written) == 15, written
        assert [sql.split()[0] for sql in written[10:]] == [
            "BEGIN",
            "SELECT",
            "UPDATE",
            "SELECT",
            "UPDATE",
        ]


def _conversation_with_turns(client, page_visitor, turns: int) -> Conversation:
    visitor = page_visitor(client)
    conversation_id = None
    for n in range(turns):
        started = services.reply_start(
            visitor=visitor, conversation_id=conversation_id, text=f"Question {n}",
            model_choice="demo:demo",
        )  # fmt: skip
        Message.objects.filter(pk=started.assistant_message.pk).update(
            status="complete", ended_reason="completed", content=f"Answer {n}"
        )
        conversation_id = str(started.conversation.pk)
    return Conversation.objects.get(pk=conversation_id)


@pytest.mark.parametrize("turns", [1, 5, 10])  # 2, 10 and 20 messages
def test_the_page_of_a_conversation_costs_the_same_however_many_messages(
    client, page_visitor, django_assert_num_queries, turns
):
    conversation = _conversation_with_turns(client, page_visitor, turns)

    with django_assert_num_queries(3):
        response = client.get(f"/streaming-demo/c/{conversation.pk}")

    assert response.status_code == 200
    assert response.content.decode().count('data-role="assistant"') == turns


async def _watch(anonymous_session, openai_upstream, chunks: int) -> tuple[str, int]:
    """Start a new visitor's reply of `chunks` tokens from the fake upstream, to watch to its
    end: (the visitor's cookie header, the reply's id)."""
    # Two seconds however many tokens: the reply is still streaming when the watch opens, even on
    # a loaded machine (5 tokens 10 ms apart had ended by then, and came as one event).
    openai_upstream.script(text=" ".join(f"w{n}" for n in range(chunks)), chunks=chunks,
                           delay=2.0 / chunks)  # fmt: skip
    cookie, visitor_id = await anonymous_session()
    visitor = Visitor(user=AnonymousUser(), visitor_id=visitor_id)
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Watch me", model_choice="openai:gpt-4.1-mini"
    )
    return cookie, started.assistant_message.pk


@pytest.mark.parametrize("chunks", [5, 100])
async def test_a_watch_reads_the_same_whatever_the_length_of_the_reply(
    anonymous_session, sse_stream, openai_upstream, statements, chunks
):
    cookie, message_id = await _watch(anonymous_session, openai_upstream, chunks)
    await _sweeper_settled()
    statements.clear()

    sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
    await sse.open()
    events = 0
    while "<article" not in (await sse.event(10)).get("data", ""):
        events += 1
    await sse.close()
    await asyncio.gather(*live_jobs())

    # The request's own statements, on its thread and on the database threads it reads
    # through (chat.db); a new connection's set-up (SQLite's PRAGMAs) is not a query, and the
    # worker's background work runs through the writer.
    watch = [
        sql
        for thread, sql in statements
        if thread.startswith(("request", "reply-db")) and not sql.startswith("PRAGMA")
    ]
    assert events >= 2  # the retry hint and the text, in one event or many
    # The session, and the reply (is it the visitor's, where does it stand): for 5 tokens or 100.
    assert [sql.split(" FROM ")[1].split()[0] for sql in watch] == [
        '"django_session"',
        '"chat_message"',
    ], watch
