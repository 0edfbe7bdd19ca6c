"""Several workers behind one Redis: a reply started on one worker is read and stopped on another.

Two real Daphne processes share the database (SQLite, or PostgreSQL in the suite's PostgreSQL
run) and the Redis server the suite starts, as a multi-worker deployment does.
"""

from __future__ import annotations

import os
import re

import pytest

pytestmark = pytest.mark.redis


def test_a_reply_started_on_one_worker_is_read_and_stopped_on_another(
    tmp_path, redis_url, app_env, browser_class, daphne, migrate, read_event
):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = app_env(tmp_path, REDIS_URL=redis_url, CHAT_DEMO_TOKENS_PER_SECOND="20")
    if os.environ.get("DATABASE_URL"):
        # The suite's PostgreSQL run: the workers share PostgreSQL, as a scaled-out site does.
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    migrate(env)
    with daphne(env, tmp_path / "a.log") as worker_a, daphne(env, tmp_path / "b.log") as worker_b:
        browser = browser_class()
        browser.get(f"{worker_a}/streaming-demo")
        status, html = browser.post(
            f"{worker_a}/streaming-demo/messages",
            {"action": "send", "message": "Across workers", "model": "demo:demo"},
        )
        assert status == 200
        message_id = re.search(r'data-status="streaming" data-message-id="(\d+)"', html).group(1)
        conversation_id = re.search(r'name="conversation" value="([0-9a-f-]+)"', html).group(1)

        connection, response = browser.events(
            worker_b, f"/streaming-demo/replies/{message_id}/events"
        )
        assert response.status == 200
        read_event(response)  # retry
        first = read_event(response)
        assert "data-seq" in first["data"], "worker B streams what worker A's job writes"

        status, _ = browser.post(
            f"{worker_b}/streaming-demo/messages",
            {"action": "stop", "conversation": conversation_id},
        )
        assert status == 204
        while "<article" not in (event := read_event(response))["data"]:
            pass
        connection.close()

        assert 'data-status="stopped"' in event["data"]
        page = browser.get(f"{worker_a}/streaming-demo/c/{conversation_id}")
        assert 'data-status="stopped"' in page and "Stopped by user" in page
