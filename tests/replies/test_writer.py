"""The reply path's one writer: progress of many replies in one transaction, starts and endings
on the same thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from chat.db import writer
from chat.models import Message
from chat.providers.demo import demo_reply
from chat.replies import generation
from chat.replies import start as services
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def start(visitor, text: str) -> int:
    started = services.reply_start(
        visitor=visitor, conversation_id=None, text=text, model_choice="demo:demo"
    )
    return started.assistant_message.pk


async def test_progress_of_many_replies_is_saved_in_one_transaction(visitor, monkeypatch):
    ids = [await sync_to_async(start)(visitor, f"Question {i}") for i in range(5)]
    batches: list[list[int]] = []
    real_save = writer.progress_save

    def recording_save(batch):
        batches.append([item.message_id for item in batch])
        return real_save(batch)

    monkeypatch.setattr(writer, "progress_save", recording_save)
    # Keep the writer busy, so that every reply's save is queued before it is free again.
    release = threading.Event()
    busy = asyncio.ensure_future(writer.db_write(release.wait, 10))
    saves = [
        asyncio.ensure_future(
            writer.reply_progress_save(message_id=message_id, text=f"text {n}", seq=n + 1)
        )
        for n, message_id in enumerate(ids)
    ]
    await asyncio.sleep(0.2)
    release.set()
    assert await busy
    assert await asyncio.wait_for(asyncio.gather(*saves), 10) == [True] * 5

    # One batch saved all five (a reply another test left running may share it).
    ours = [set(batch) & set(ids) for batch in batches if set(batch) & set(ids)]
    assert ours == [set(ids)]
    rows = {m.pk: m async for m in Message.objects.filter(pk__in=ids)}
    for n, message_id in enumerate(ids):
        assert rows[message_id].content == f"text {n}"
        assert rows[message_id].stream_seq == n + 1
        assert rows[message_id].is_streaming


async def test_a_newer_save_of_a_reply_replaces_its_queued_one(visitor):
    message_id = await sync_to_async(start)(visitor, "Twice")
    release = threading.Event()
    busy = asyncio.ensure_future(writer.db_write(release.wait, 10))
    older = asyncio.ensure_future(
        writer.reply_progress_save(message_id=message_id, text="He", seq=1)
    )
    newer = asyncio.ensure_future(
        writer.reply_progress_save(message_id=message_id, text="Hello", seq=2)
    )
    await asyncio.sleep(0.1)
    release.set()
    await busy

    assert await asyncio.wait_for(asyncio.gather(older, newer), 10) == [True, True]
    message = await Message.objects.aget(pk=message_id)
    assert (message.content, message.stream_seq) == ("Hello", 2)


async def test_a_reply_ended_elsewhere_is_not_written_and_its_job_is_told(visitor):
    message_id = await sync_to_async(start)(visitor, "Reaped")
    await Message.objects.filter(pk=message_id).aupdate(
        status=Message.Status.ERROR, ended_reason=Message.EndedReason.INTERRUPTED, content="kept"
    )

    saved = await writer.reply_progress_save(message_id=message_id, text="late text", seq=3)

    assert saved is False
    message = await Message.objects.aget(pk=message_id)
    assert message.content == "kept"


async def test_a_failed_batch_reaches_every_waiter_and_the_next_batch_saves(visitor, monkeypatch):
    from django.db import OperationalError

    ids = [await sync_to_async(start)(visitor, f"Flaky {i}") for i in range(2)]
    real_save = writer.progress_save
    calls = []

    def fails_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise OperationalError("disk I/O error")
        return real_save(batch)

    monkeypatch.setattr(writer, "progress_save", fails_once)
    release = threading.Event()
    busy = asyncio.ensure_future(writer.db_write(release.wait, 10))
    first = [
        asyncio.ensure_future(writer.reply_progress_save(message_id=i, text="a", seq=1))
        for i in ids
    ]
    await asyncio.sleep(0.1)
    release.set()
    await busy
    results = await asyncio.wait_for(asyncio.gather(*first, return_exceptions=True), 10)
    assert all(isinstance(result, OperationalError) for result in results)

    again = [writer.reply_progress_save(message_id=i, text="ab", seq=2) for i in ids]
    assert await asyncio.wait_for(asyncio.gather(*again), 10) == [True, True]
    assert {m.content async for m in Message.objects.filter(pk__in=ids)} == {"ab"}


async def test_starts_and_endings_are_written_by_the_writer_thread(visitor, monkeypatch):
    threads: dict[str, str] = {}
    real_start, real_ending = services.reply_start, generation.record_ending

    def recording_start(**kwargs):
        threads["start"] = threading.current_thread().name
        return real_start(**kwargs)

    def recording_ending(*args):
        threads["ending"] = threading.current_thread().name
        return real_ending(*args)

    monkeypatch.setattr(services, "reply_start", recording_start)
    monkeypatch.setattr(generation, "record_ending", recording_ending)

    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Through the writer", model_choice="demo:demo"
    )
    job = next(t for t in live_jobs() if t.get_name() == f"reply-{started.assistant_message.pk}")
    await asyncio.wait_for(job, 20)

    # On PostgreSQL, with row locks, starts stay concurrent; endings always use the writer.
    expected_start = "reply-writer" if writer.writer_serializes_starts() else None
    if expected_start:
        assert threads["start"] == expected_start
    else:
        assert threads["start"] != "reply-writer"
    assert threads["ending"] == "reply-writer"
    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.status == Message.Status.COMPLETE
    assert message.content == demo_reply("Through the writer")
