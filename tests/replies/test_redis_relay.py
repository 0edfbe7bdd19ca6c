"""With REDIS_URL: readers on the worker that runs a reply follow it in memory; readers on other
workers get it from Redis in small leading-edge windows, all of a worker's replies in one
pipeline per window (issue 21, sections 1 and 2).

"Another worker" is a second RedisReplyStream on the same Redis: it sees only what reached Redis.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import redis

from chat.replies.stream import RedisReplyStream, get_reply_stream, reset_reply_stream
from chat.replies.stream.publisher import Publisher, PublishTicker


@pytest.fixture
def redis_stream(settings, use_redis):
    def make(window_ms: int) -> RedisReplyStream:
        settings.CHAT_REDIS_PUBLISH_MS = window_ms
        reset_reply_stream()
        stream = get_reply_stream()
        assert isinstance(stream, RedisReplyStream)
        return stream

    return make


def seqs(entries) -> list[tuple[int, str]]:
    return [(entry.seq, entry.text) for entry in entries]


async def test_a_reader_on_the_generating_worker_gets_each_delta_without_waiting_for_redis(
    redis_stream, use_redis
):
    # A window of a minute: whatever waited for Redis would wait that long.
    stream = redis_stream(60_000)
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    publisher = Publisher(stream, 31)
    # The send's own socket starts reading before the first token.
    first = asyncio.create_task(stream.read(31, after=0, timeout=10))
    await asyncio.sleep(0)
    publisher.add(1, "Hel")
    assert seqs(await asyncio.wait_for(first, 10)) == [(1, "Hel")]
    # The first delta also went to Redis at once (leading edge) ...
    assert seqs(await elsewhere.read(31, after=0, timeout=10)) == [(1, "Hel")]

    for seq, text in [(2, "lo"), (3, " wor"), (4, "ld")]:
        publisher.add(seq, text)
        # ... and the next ones reach readers here as they come, while Redis has not got them.
        assert seqs(await stream.read(31, after=seq - 1, timeout=10)) == [(seq, text)]
    assert await elsewhere.read(31, after=1, timeout=0) == []
    assert stream.gathers_on_write(31) is False  # readers here coalesce as in memory

    recorded = object()
    assert await publisher.flush()
    await stream.finish(31, 5, "completed", recorded)
    here = await stream.read(31, after=0, timeout=0)
    there = await elsewhere.read(31, after=0, timeout=0)
    expected = [(1, "Hel"), (2, "lo"), (3, " wor"), (4, "ld"), (5, "completed")]
    assert seqs(here) == seqs(there) == expected
    assert here[-1].message is recorded  # no database read for the ending here


async def test_a_remote_reader_gets_the_first_delta_at_once_then_window_wide_batches(
    redis_stream, use_redis
):
    window = 0.4
    stream = redis_stream(int(window * 1000))
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    admin = redis.Redis.from_url(use_redis, decode_responses=True)
    publisher = Publisher(stream, 32)
    loop = asyncio.get_running_loop()
    added_at: dict[int, float] = {}

    async def generate() -> None:
        for seq in range(1, 31):
            added_at[seq] = loop.time()
            publisher.add(seq, f"t{seq} ")
            await asyncio.sleep(0.05)
        assert await publisher.flush()
        await stream.finish(32, 31, "completed")

    job = asyncio.create_task(generate())
    got: list[tuple[int, str]] = []
    after = 0
    while not got or got[-1][1] != "completed":
        got += seqs(await elsewhere.read(32, after=after, timeout=10))
        after = got[-1][0] if got else after
    await job

    assert got == [(seq, f"t{seq} ") for seq in range(1, 31)] + [(31, "completed")]
    ids = [entry_id for entry_id, _ in admin.xrange(stream.key(32))]
    # The first delta went out alone, at once: it did not wait for a window.
    assert ids[0] == "0-1"
    # Then one entry per window: each holds what was added within about one window (twice, for
    # a loaded machine, where ticks and Redis answer late), far fewer entries than deltas.
    lasts = [int(entry_id.split("-")[1]) for entry_id in ids[:-1]]
    for before, last in zip([0, *lasts], lasts, strict=False):
        span = added_at[last] - added_at[before + 1]
        assert span <= 2 * window, f"entry ending at {last} spans {span:.3f} s"
    assert len(lasts) <= (added_at[30] - added_at[1]) / window + 2, lasts


async def test_all_replies_of_a_worker_go_to_redis_in_one_pipeline_per_tick(
    redis_stream, use_redis
):
    window = 0.05
    stream = redis_stream(int(window * 1000))
    admin = redis.Redis.from_url(use_redis, decode_responses=True)
    replies = 10
    publishers = [Publisher(stream, 100 + i) for i in range(replies)]
    # Start the ticker before counting (the first add creates it).
    publishers[0].add(1, "x")
    ticker = PublishTicker.of(stream)
    await asyncio.sleep(window * 2)
    admin.config_resetstat()
    ticks_before = ticker.ticks
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def generate(publisher: Publisher) -> None:
        first = 2 if publisher is publishers[0] else 1
        for seq in range(first, 31):
            publisher.add(seq, "y")
            await asyncio.sleep(random.uniform(0.005, 0.03))

    await asyncio.gather(*(generate(publisher) for publisher in publishers))
    # Let the last tick go out.
    while any(publisher.pending or publisher.in_flight for publisher in publishers):
        await asyncio.sleep(window)
    elapsed = loop.time() - started
    ticks = ticker.ticks - ticks_before

    xadds = int(admin.info("commandstats")["cmdstat_xadd"]["calls"])
    # At most one entry per reply per tick, and ticks no more often than the window allows.
    assert xadds <= replies * ticks
    assert ticks <= elapsed / window + 2
    # So the replies shared ticks: far fewer round trips than entries.
    assert ticks < xadds / 3, (ticks, xadds)
    for i, publisher in enumerate(publishers):
        assert await publisher.flush()
        entries = await RedisReplyStream(url=use_redis, retention_seconds=60).read(
            100 + i, after=0, timeout=0
        )
        assert [entry.seq for entry in entries] == list(range(1, 31))


async def test_a_worker_follows_all_its_remote_replies_with_one_blocking_read(
    redis_stream, use_redis
):
    """Many readers on another worker, of many replies: Redis sees that worker's one read per
    window (not one per reader), on one connection, and every reader gets every delta once."""
    window = 0.05
    stream = redis_stream(int(window * 1000))
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    admin = redis.Redis.from_url(use_redis, decode_responses=True)
    replies, readers_each, tokens = 6, 8, 30
    publishers = [Publisher(stream, 200 + i) for i in range(replies)]

    async def generate(publisher: Publisher) -> None:
        for seq in range(1, tokens + 1):
            publisher.add(seq, f"{seq} ")
            await asyncio.sleep(random.uniform(0.005, 0.03))
        assert await publisher.flush()
        await stream.finish(publisher.message_id, tokens + 1, "completed")

    async def follow(message_id: int) -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        after = 0
        while not got or got[-1][1] != "completed":
            got += seqs(await elsewhere.read(message_id, after=after, timeout=10))
            after = got[-1][0] if got else after
        return got

    admin.config_resetstat()
    earlier = {c["id"] for c in admin.client_list() if "b" in c["flags"]}
    readers = [
        asyncio.create_task(follow(publisher.message_id))
        for publisher in publishers
        for _ in range(readers_each)
    ]

    def blocked() -> list[dict]:
        return [
            c
            for c in admin.client_list()
            if "b" in c["flags"] and c["cmd"] == "xread" and c["id"] not in earlier
        ]

    deadline = asyncio.get_running_loop().time() + 10
    while not (waiting := blocked()):  # the worker's read is out (later on a loaded machine)
        assert asyncio.get_running_loop().time() < deadline, "no read blocked"
        await asyncio.sleep(0.05)
    await asyncio.gather(*(generate(publisher) for publisher in publishers))
    results = await asyncio.gather(*readers)

    expected = [(seq, f"{seq} ") for seq in range(1, tokens + 1)] + [(tokens + 1, "completed")]
    assert all(result == expected for result in results)
    # One connection waits for all 48 readers ...
    assert len(waiting) == 1, waiting
    # ... and one or two reads per publish tick (Redis answers the read after the tick's first
    # XADD; the next read takes the rest), one per reply joining, its final flush and its end,
    # where a read per reader per tick would be 48 times the ticks.
    xreads = int(admin.info("commandstats")["cmdstat_xread"]["calls"])
    ticks = PublishTicker.of(stream).ticks
    assert xreads <= 2 * ticks + 3 * replies + 5, (xreads, ticks)
    assert xreads < replies * readers_each * 2


async def test_a_reply_that_joins_a_waiting_read_gets_its_first_delta_at_once(
    redis_stream, use_redis
):
    """The worker's read is blocked on a quiet reply when a reader of another one arrives: the
    read is woken to name the new reply too, rather than the reader waiting out the block."""
    stream = redis_stream(50)
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    quiet, busy = Publisher(stream, 301), Publisher(stream, 302)
    quiet.add(1, "first")
    assert seqs(await elsewhere.read(301, after=0, timeout=10)) == [(1, "first")]
    waiting = asyncio.create_task(elsewhere.read(301, after=1, timeout=14))
    await asyncio.sleep(0.2)  # the read now blocks on the quiet reply alone

    joining = asyncio.create_task(elsewhere.read(302, after=0, timeout=14))
    await asyncio.sleep(0.05)
    busy.add(1, "news")
    assert seqs(await asyncio.wait_for(joining, 5)) == [(1, "news")]
    assert not waiting.done()
    waiting.cancel()


async def test_a_followed_copy_survives_the_sweep_of_idle_logs_and_a_long_silence(
    redis_stream, use_redis
):
    """The worker's sweep of idle in-memory logs leaves the copies of replies it follows alone:
    one dropped and made again half-way would put seq 201 where seq 1 belongs."""
    stream = redis_stream(50)
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    publisher = Publisher(stream, 401)
    for seq in range(1, 6):
        publisher.add(seq, f"{seq} ")
    assert await publisher.flush()
    got = []
    while len(got) < 5:
        got += seqs(await elsewhere.read(401, after=len(got), timeout=10))
    # A long silence: the copy looks idle to the sweep, and no reader waits on it just now.
    follower = elsewhere._follower()
    follower.mirror._logs[401].touched = 0.0
    elsewhere.forget_idle()

    for seq in range(6, 9):
        publisher.add(seq, f"{seq} ")
    assert await publisher.flush()
    await stream.finish(401, 9, "completed")
    expected = [(seq, f"{seq} ") for seq in range(1, 9)] + [(9, "completed")]
    for start in (0, 3, 5):
        got, after = [], start
        while not got or got[-1][1] != "completed":
            got += seqs(await elsewhere.read(401, after=after, timeout=10))
            after = got[-1][0] if got else after
        assert got == expected[start:]


async def test_a_gap_or_a_second_ending_in_the_log_shifts_nothing_and_stops_no_reader(
    redis_stream, use_redis
):
    """Entries Redis lost (a failover) keep their places, empty; a reaper's ending followed by
    the job's own ends the copy at the first; the worker's read goes on for other replies."""
    stream = redis_stream(50)
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    admin = redis.Redis.from_url(use_redis, decode_responses=True)
    key = stream.key(402)
    admin.xadd(key, {"k": "d", "t": "a"}, id="0-1")
    admin.xadd(key, {"k": "d", "s": 2, "t": json.dumps(["b", "c"])}, id="0-3")
    admin.xadd(key, {"k": "d", "t": "f"}, id="0-6")  # 4 and 5 were lost
    admin.xadd(key, {"k": "end", "t": "interrupted"}, id="0-7")  # the reaper's
    admin.xadd(key, {"k": "d", "t": "late"}, id="0-8")
    admin.xadd(key, {"k": "end", "t": "completed"}, id="0-9")  # the job's own

    got, after = [], 0
    while not got or got[-1][1] not in ("interrupted", "completed"):
        got += seqs(await elsewhere.read(402, after=after, timeout=10))
        after = got[-1][0] if got else after
    assert got == [(1, "a"), (2, "b"), (3, "c"), (4, ""), (5, ""), (6, "f"), (7, "interrupted")]
    assert seqs(await elsewhere.read(402, after=5, timeout=10)) == got[5:]

    follower = elsewhere._follower()
    assert not follower.task.done()
    publisher = Publisher(stream, 403)
    publisher.add(1, "still here")
    assert seqs(await elsewhere.read(403, after=0, timeout=10)) == [(1, "still here")]


async def test_readers_switching_from_memory_to_redis_or_joining_late_lose_and_double_nothing(
    redis_stream, use_redis
):
    stream = redis_stream(200)
    elsewhere = RedisReplyStream(url=use_redis, retention_seconds=60)
    publisher = Publisher(stream, 33)
    texts = {seq: f"w{seq} " for seq in range(1, 61)}

    async def generate() -> None:
        for seq, text in texts.items():
            publisher.add(seq, text)
            await asyncio.sleep(random.uniform(0, 0.01))
        assert await publisher.flush()
        await stream.finish(33, 61, "completed")

    async def follow(start: int, switch_at: int | None) -> list[tuple[int, str]]:
        """Read from `start` on this worker; at `switch_at` this worker drops its copy (as it
        does a while after the reply ended), and the reader carries on from Redis."""
        got: list[tuple[int, str]] = []
        after = start
        while not got or got[-1][1] != "completed":
            if switch_at is not None and after >= switch_at and stream._local.holds(33):
                await job
                stream._local._logs.pop(33)
            got += seqs(await stream.read(33, after=after, timeout=10))
            after = got[-1][0] if got else after  # [] when woken by earlier text
        return got

    job = asyncio.create_task(generate())
    await asyncio.sleep(0.05)
    switching = asyncio.create_task(follow(0, switch_at=30))
    late_here = asyncio.create_task(follow(17, switch_at=None))

    async def late_elsewhere(start: int) -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        after = start
        while not got or got[-1][1] != "completed":
            got += seqs(await elsewhere.read(33, after=after, timeout=10))
            after = got[-1][0] if got else after
        return got

    there = asyncio.create_task(late_elsewhere(5))
    await job
    expected = [*texts.items(), (61, "completed")]
    assert await switching == expected
    assert await late_here == expected[17:]
    assert await there == expected[5:]
    for start in (0, 1, 29, 59, 60):  # resume from any seq, on any worker, after the end
        assert seqs(await elsewhere.read(33, after=start, timeout=0)) == expected[start:]


@pytest.mark.redis
def test_on_real_workers_the_senders_socket_streams_while_the_other_worker_waits_for_redis(
    tmp_path, redis_url, app_env, browser_class, daphne, migrate, live_workers, deltas
):
    """Two Daphne workers with a publish window of a minute: the socket on the worker that runs
    the reply still gets it token by token (in memory); the socket on the other worker gets the
    first words at once (leading edge) and the rest when the job publishes again, at its end."""
    import contextlib
    import re
    import threading

    ws_connect = live_workers.ws_connect

    redis.Redis.from_url(redis_url).flushdb()
    env = app_env(
        tmp_path,
        REDIS_URL=redis_url,
        CHAT_DEMO_TOKENS_PER_SECOND="20",
        CHAT_REDIS_PUBLISH_MS="60000",
    )
    migrate(env)
    with daphne(env, tmp_path / "a.log") as worker_a, daphne(env, tmp_path / "b.log") as worker_b:
        browser = browser_class()
        browser.get(f"{worker_a}/streaming-demo")
        status, html = browser.post(
            f"{worker_a}/streaming-demo/messages",
            {"action": "send", "message": "Local and remote", "model": "demo:demo"},
        )
        assert status == 200
        # The send gave the browser its session: the sockets carry it.
        stack = contextlib.ExitStack()
        sockets = {
            "a": stack.enter_context(ws_connect(browser, worker_a)),
            "b": stack.enter_context(ws_connect(browser, worker_b)),
        }
        message_id = int(re.search(r'data-status="streaming" data-message-id="(\d+)"', html)[1])
        frames: dict[str, list[list[tuple[int, str]]]] = {"a": [], "b": []}

        def watch(name: str) -> None:
            socket = sockets[name]
            socket.send(json.dumps({"action": "watch", "message_id": message_id, "after": 0}))
            while True:
                frame = str(socket.recv(timeout=60))
                if f'id="msg-{message_id}"' in frame and "<article" in frame:
                    return
                if pieces := deltas(frame):
                    frames[name].append(pieces)

        threads = [threading.Thread(target=watch, args=(name,)) for name in sockets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        stack.close()

    pieces = {name: [piece for frame in got for piece in frame] for name, got in frames.items()}
    # Both got every token once, in order (a fragment's span carries its last seq).
    for got in pieces.values():
        seqs_sent = [seq for seq, _ in got]
        assert seqs_sent == sorted(set(seqs_sent))
    assert "".join(text for _, text in pieces["a"]) == "".join(text for _, text in pieces["b"])
    assert pieces["a"][-1][0] == pieces["b"][-1][0] >= 20
    # The generating worker's socket followed the reply as it came ...
    assert len(frames["a"]) >= 10, [len(frame) for frame in frames["a"]]
    # ... the other one had the first words at once, then waited for the window (the end).
    assert len(frames["b"]) <= 3, [len(frame) for frame in frames["b"]]
    assert frames["b"][0][0][0] == 1
