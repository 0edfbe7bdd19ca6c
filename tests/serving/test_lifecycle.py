"""Stopping the server mid-reply: the reply ends as interrupted with its text saved."""

from __future__ import annotations

import re
import sqlite3
import time

from chat.providers.demo import demo_reply


def test_stopping_the_server_mid_reply_saves_the_text_as_interrupted(
    tmp_path, app_env, browser_class, daphne, migrate
):
    # No grace: the reply is cut off at once (replies/test_redis_resilience.py drains with one).
    env = app_env(tmp_path, CHAT_DEMO_TOKENS_PER_SECOND="20", CHAT_SHUTDOWN_GRACE_SECONDS="0")
    migrate(env)
    with daphne(env, tmp_path / "server.log") as url:
        browser = browser_class()
        browser.get(f"{url}/streaming-demo")
        _, html = browser.post(
            f"{url}/streaming-demo/messages",
            {"action": "send", "message": "Shut down mid reply", "model": "demo:demo"},
        )
        message_id = int(re.search(r'data-status="streaming" data-message-id="(\d+)"', html)[1])
        time.sleep(1.5)
    # Leaving the block sends SIGTERM and waits for Daphne to exit.

    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        status, ended, content = db.execute(
            "SELECT status, ended_reason, content FROM chat_message WHERE id = ?", (message_id,)
        ).fetchone()
    assert (status, ended) == ("error", "interrupted")
    assert len(content) > 20 and demo_reply("Shut down mid reply").startswith(content)
