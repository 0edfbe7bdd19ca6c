from __future__ import annotations

import asyncio

import pytest

from chat.streams import MemoryReplyStream, RedisReplyStream, get_reply_stream


@pytest.fixture(params=["memory", "redis"])
def reply_stream(request):
    if request.param == "redis":
        request.getfixturevalue("use_redis")
    stream = get_reply_stream()
    assert isinstance(stream, RedisReplyStream if request.param == "redis" else MemoryReplyStream)
    return stream


async def test_read_returns_entries_after_the_offset(reply_stream):
    for seq, text in enumerate(["Hel", "lo", " world"], start=1):
        await reply_stream.append(7, seq, text)
    await reply_stream.finish(7, 4, "completed")

    everything = await reply_stream.read(7, after=0, timeout=0)
    tail = await reply_stream.read(7, after=2, timeout=0)

    assert [(e.seq, e.kind, e.text) for e in everything] == [
        (1, "delta", "Hel"),
        (2, "delta", "lo"),
        (3, "delta", " world"),
        (4, "end", "completed"),
    ]
    assert [e.seq for e in tail] == [3, 4]


async def test_a_blocked_reader_wakes_when_text_arrives(reply_stream):
    reader = asyncio.create_task(reply_stream.read(8, after=0, timeout=5))
    await asyncio.sleep(0.05)
    assert not reader.done()

    await reply_stream.append(8, 1, "first")

    entries = await asyncio.wait_for(reader, 2)
    assert [e.text for e in entries] == ["first"]


async def test_read_times_out_empty(reply_stream):
    assert await reply_stream.read(9, after=0, timeout=0.05) == []


async def test_stop_reaches_the_waiting_job(reply_stream):
    waiter = asyncio.create_task(reply_stream.wait_stop(10))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    await reply_stream.request_stop(10)

    await asyncio.wait_for(waiter, 1)


async def test_redis_stream_is_shared_between_workers(use_redis):
    # Two instances stand for two worker processes: what one writes, the other reads.
    writer = RedisReplyStream(url=use_redis, retention_seconds=60)
    reader = RedisReplyStream(url=use_redis, retention_seconds=60)
    await writer.append(11, 1, "from worker A")
    await reader.request_stop(11)

    assert [e.text for e in await reader.read(11, after=0, timeout=0)] == ["from worker A"]
    await asyncio.wait_for(writer.wait_stop(11), 1)
