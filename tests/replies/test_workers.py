"""chat/replies/workers.py: what a reply's start makes this worker write about itself."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from chat.replies import registry, workers
from chat.replies import start as services
from chat.replies.stream import get_reply_stream

pytestmark = pytest.mark.django_db(transaction=True)


async def _start(visitor, count: int) -> list[int]:
    ids = []
    for index in range(count):
        started = await sync_to_async(services.reply_start)(
            visitor=visitor, conversation_id=None, text=f"q{index}", model_choice="demo:demo"
        )
        ids.append(started.assistant_message.pk)
    return ids


async def test_starting_replies_writes_no_heartbeat_of_the_others(visitor, monkeypatch, settings):
    # Each start used to beat every live reply in the database: O(N²) writes while N start.
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 20
    beats: list[list[int]] = []
    monkeypatch.setattr(workers, "_beat_in_database", lambda ids: beats.append(ids))
    tasks = [workers.job_launch(message_id) for message_id in await _start(visitor, 10)]
    await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Only the worker's own periodic beat (its first comes when it starts), not one per start.
    assert len(beats) <= 1


async def test_other_workers_learn_of_new_replies_at_once_in_one_beat(
    visitor, use_redis, monkeypatch, settings
):
    import redis

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 20
    shared: list[frozenset[int]] = []
    real_beat = workers._beat_shared

    async def counted(live=None):
        shared.append(registry.live_reply_ids() if live is None else live)
        await real_beat(live)

    monkeypatch.setattr(workers, "_beat_shared", counted)
    ids = await _start(visitor, 10)
    tasks = [workers.job_launch(message_id) for message_id in ids]  # in one go, as a burst does
    for _ in range(50):
        await asyncio.sleep(0.02)
        if workers._extra_beat is not None and workers._extra_beat.done():
            break
    try:
        assert 1 <= len(shared) <= 2, "one beat for the burst (and one for any start during it)"
        key = get_reply_stream().worker_key(workers.WORKER_ID)
        listed = json.loads(redis.Redis.from_url(use_redis).get(key))
        assert set(ids) <= set(listed)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
