from __future__ import annotations

import asyncio

import pytest

from chat.replies.stream import (
    SHARED_STREAM_ERRORS,
    MemoryReplyStream,
    RedisReplyStream,
    get_reply_stream,
)


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


async def test_the_end_marker_carries_the_recorded_reply_within_this_process(reply_stream):
    recorded = object()  # the Message as the job saved it
    await reply_stream.append(9, 1, "Done")
    await reply_stream.finish(9, 2, "completed", recorded)
    await reply_stream.finish(10, 1, "stopped")  # a reaper's: nothing recorded here

    end = (await reply_stream.read(9, after=1, timeout=0))[-1]
    assert (end.kind, end.text) == ("end", "completed")
    # In memory readers get it as it is; through Redis they read it from the database.
    assert end.message is (recorded if isinstance(reply_stream, MemoryReplyStream) else None)
    assert (await reply_stream.read(10, after=0, timeout=0))[-1].message is None


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


# --- Redis settings chosen with the blocking reads -----------------------------------------------


async def test_no_blocking_read_can_outlive_its_socket(settings, use_redis):
    from chat.replies import redis_options

    stream = get_reply_stream()
    pool = stream.client().connection_pool.connection_kwargs
    # A reader per waiting connection: many readers must not run out of the pool.
    assert stream.client().connection_pool.max_connections >= 1000
    # The longest read we ask Redis for, with room for the answer to travel back.
    assert pool["socket_timeout"] == redis_options.STREAM_SOCKET_TIMEOUT
    assert pool["socket_timeout"] >= redis_options.MAX_BLOCK_SECONDS + 5
    assert pool["socket_connect_timeout"] and pool["health_check_interval"]
    # Readers that want to wait longer (the SSE ping interval) are cut to the longest block.
    assert redis_options.MAX_BLOCK_SECONDS <= settings.CHAT_SSE_PING_SECONDS
    # The cache (rate limits) has explicit, short timeouts too.
    from django.core.cache import caches
    from django.test import override_settings

    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": use_redis,
                "OPTIONS": redis_options.cache_options(),
            }
        }
    ):
        kwargs = caches["default"]._cache._pool_options
        assert kwargs["socket_timeout"] == redis_options.CACHE_SOCKET_TIMEOUT


async def test_a_reader_waits_through_a_silence_longer_than_redis_pys_default_timeout(use_redis):
    # redis-py's default socket timeout is 5 s: a 15 s block used to raise after 5 s.
    stream = get_reply_stream()
    reader = asyncio.create_task(stream.read(12, after=0, timeout=15))
    await asyncio.sleep(6.5)
    assert not reader.done()

    await stream.append(12, 1, "at last")

    assert [e.text for e in await asyncio.wait_for(reader, 5)] == ["at last"]


# --- Batches -----------------------------------------------------------------------------------


async def test_a_batch_is_one_command_and_readers_resume_from_any_seq(use_redis):
    import redis

    stream = get_reply_stream()
    admin = redis.Redis.from_url(use_redis)
    admin.config_resetstat()

    await stream.publish(13, [(1, "a"), (2, "b"), (3, "c")])
    await stream.publish(14, [(1, "solo")])

    assert admin.info("commandstats")["cmdstat_xadd"]["calls"] == 2
    for after in range(4):
        entries = await stream.read(13, after=after, timeout=0)
        assert [(e.seq, e.text) for e in entries] == [(1, "a"), (2, "b"), (3, "c")][after:]
    assert [e.text for e in await stream.read(14, after=0, timeout=0)] == ["solo"]


async def test_a_retried_batch_or_a_second_end_marker_is_not_an_error(use_redis):
    stream = get_reply_stream()
    await stream.publish(15, [(1, "a"), (2, "b")])
    await stream.publish(15, [(1, "a"), (2, "b")])  # a retry whose first try arrived
    await stream.finish(15, 3, "completed")
    stream.finish_sync(15, 3, "interrupted")  # a reaper that came too late

    entries = await stream.read(15, after=0, timeout=0)
    assert [(e.seq, e.kind, e.text) for e in entries][-1] == (3, "end", "completed")


# --- Cancellation in bulk -----------------------------------------------------------------------


async def test_cancelling_many_redis_waits_at_random_moments_never_loses_a_cancel(use_redis):
    import random

    stream = get_reply_stream()

    async def reader(i: int) -> None:
        await stream.read(1000 + i, after=0, timeout=10)

    async def stop_waiter(i: int) -> None:
        await stream.wait_stop(2000 + i)

    tasks = [asyncio.create_task(reader(i)) for i in range(150)]
    tasks += [asyncio.create_task(stop_waiter(i)) for i in range(150)]
    for task in tasks:
        await asyncio.sleep(random.uniform(0, 0.004))
        task.cancel()

    done, pending = await asyncio.wait(tasks, timeout=2)
    assert not pending, f"{len(pending)} of {len(tasks)} cancellations were lost"
    # A cancel is lost if a task carries on (pending) or returns as if nothing happened. One whose
    # call failed before its cancel came (on a loaded machine, 150 connections opened at once can
    # meet the 2 s connect timeout) did not swallow anything: its reader retries.
    ended = [task for task in done if not task.cancelled()]
    returned = [task.result() for task in ended if task.exception() is None]
    assert not returned, f"{len(returned)} returned instead of being cancelled: {returned[:3]!r}"
    failed = [task.exception() for task in ended]
    assert all(isinstance(error, SHARED_STREAM_ERRORS) for error in failed), failed[:3]


async def test_stop_reaches_a_job_through_the_channel_without_polling(use_redis):
    import redis

    stream = get_reply_stream()
    admin = redis.Redis.from_url(use_redis)
    waiter = asyncio.create_task(stream.wait_stop(16))
    await asyncio.sleep(0.3)
    admin.config_resetstat()
    await asyncio.sleep(0.5)
    # Waiting costs nothing per reply (no EXISTS poll); the listener's backstop is one MGET.
    stats = admin.info("commandstats")
    assert "cmdstat_exists" not in stats

    other = RedisReplyStream(url=use_redis, retention_seconds=60)  # another worker
    started = asyncio.get_running_loop().time()
    await other.request_stop(16)
    await asyncio.wait_for(waiter, 1)
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_a_batch_whose_publish_is_cancelled_goes_out_with_the_final_flush(
    use_redis, monkeypatch
):
    """A shutdown cancels the job's final flush mid-publish: that batch must not be lost (a
    reader got "Redis " + "ny job" of "Redis streams let every worker read what any job"
    before). Read from another worker, which sees only what reached Redis."""
    from chat.replies.stream.publisher import Publisher

    stream = get_reply_stream()
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    real_publish = stream.publish
    entered = asyncio.Event()

    async def slow_publish(message_id, deltas):
        entered.set()
        await asyncio.sleep(10)
        await real_publish(message_id, deltas)

    publisher = Publisher(stream, 9)
    publisher.add(1, "a")
    assert await publisher.flush()
    for seq, text in [(2, "b"), (3, "c"), (4, "d")]:
        publisher.add(seq, text)
    monkeypatch.setattr(stream, "publish", slow_publish)
    flushing = asyncio.create_task(publisher.flush())
    await entered.wait()
    flushing.cancel()  # the shutdown
    with pytest.raises(asyncio.CancelledError):
        await flushing
    monkeypatch.setattr(stream, "publish", real_publish)
    publisher.add(5, "e")
    assert await publisher.flush()  # the job's final flush

    entries = await elsewhere.read(9, after=0, timeout=0)
    assert [(e.seq, e.text) for e in entries] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]


async def test_the_final_flush_waits_for_a_hung_tick_and_sends_its_batch_too(
    use_redis, monkeypatch
):
    """The worker's tick took a batch and hangs in Redis: the job's final flush must not write
    a later entry first (Redis would then refuse the tick's) nor lose the tick's batch."""
    from chat.replies.stream.publisher import Publisher

    stream = get_reply_stream()
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    entered = asyncio.Event()

    async def hung_publish_many(batches):
        entered.set()
        await asyncio.sleep(30)
        return set()

    monkeypatch.setattr(stream, "publish_many", hung_publish_many)
    publisher = Publisher(stream, 12)
    publisher.add(1, "a")
    publisher.add(2, "b")
    await asyncio.wait_for(entered.wait(), 10)
    publisher.add(3, "c")
    assert await publisher.flush(timeout=0.5)

    entries = await elsewhere.read(12, after=0, timeout=0)
    assert [(e.seq, e.text) for e in entries] == [(1, "a"), (2, "b"), (3, "c")]


async def test_a_batch_published_twice_is_read_once(use_redis):
    stream = get_reply_stream()
    await stream.publish(7, [(1, "a")])
    await stream.publish(7, [(2, "b"), (3, "c")])
    # The same batch again, longer: its first try had arrived although the call was cancelled.
    await stream.publish(7, [(2, "b"), (3, "c"), (4, "d")])

    entries = await stream.read(7, after=0, timeout=0)
    assert [(e.seq, e.text) for e in entries] == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    later = await stream.read(7, after=2, timeout=0)
    assert [e.seq for e in later] == [3, 4]


async def test_the_memory_stream_also_reads_a_republished_batch_once():
    stream = MemoryReplyStream(retention_seconds=60)
    await stream.publish(3, [(1, "a"), (2, "b")])
    await stream.publish(3, [(1, "a"), (2, "b"), (3, "c")])

    entries = await stream.read(3, after=0, timeout=0)
    assert [(e.seq, e.text) for e in entries] == [(1, "a"), (2, "b"), (3, "c")]


async def test_cancelling_the_stop_listener_at_any_moment_of_its_start_ends_it(use_redis):
    """A cancel that landed in the listener's subscribe or first key check could be swallowed
    by redis-py; the listener then blocked in its read for good and shutdown hung (CI, stop 16)."""
    import random

    lost = 0
    for _ in range(60):
        stream = RedisReplyStream(url=use_redis, retention_seconds=60)
        stream.start_listening()
        listener = stream._listener()
        listener.register(1)  # the start-up key check then has a key to look at
        await asyncio.sleep(random.uniform(0, 0.006))
        listener.task.cancel()
        listener.backstop.cancel()
        _, pending = await asyncio.wait({listener.task, listener.backstop}, timeout=3)
        lost += bool(pending)
    assert lost == 0, f"{lost} of 60 cancelled listeners kept running"


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_call_bounded_gives_up_on_leaves_no_unretrieved_error(how):
    """A call `bounded` stops waiting for may still fail afterwards (its socket was closed under
    it). Its error must be consumed: "Task exception was never retrieved" is logged at garbage
    collection, and on CPython 3.11 the traceback it formats inside another thread's ast.parse
    raised "SystemError: AST constructor recursion depth mismatch" (CI, stop 16)."""
    import contextlib
    import gc

    from chat.replies.stream.base import StreamUnavailable, bounded

    unretrieved = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    async def fails_after_being_given_up() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # as redis-py can swallow it
            await asyncio.sleep(10)
        await asyncio.sleep(0)
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    if how == "timeout":
        with pytest.raises(StreamUnavailable):
            await bounded(fails_after_being_given_up(), timeout=0.01)
    else:
        caller = asyncio.create_task(bounded(fails_after_being_given_up(), timeout=None))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    assert unretrieved == []
