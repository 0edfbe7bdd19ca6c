"""Workers and Redis failing under live replies, with real Daphne workers and a real Redis:
a worker killed mid-reply, a worker drained with SIGTERM, and Redis stopped and restarted."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

MODEL = "openai:gpt-4.1-mini"  # what the workers offer (tests/support/workers.py)

DEAD_AFTER = 4.0


def _read_in_background(reader) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            reader.read_to_end()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc
        outcome["ended_at"] = time.monotonic()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for_text(reader, pieces: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(reader.pieces) < pieces:
        assert time.monotonic() < deadline, "the reply did not stream"
        time.sleep(0.02)


def test_a_killed_workers_reply_ends_on_the_other_worker_with_all_it_streamed(
    tmp_path,
    redis_url,
    browser_class,
    daphne_worker,
    fake_upstream_server,
    live_workers,
    message_row,
    migrate,
    sse_reader_class,
):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with fake_upstream_server() as fake:
        env = live_workers.workers_env(
            tmp_path, redis_url, fake, CHAT_WORKER_DEAD_AFTER_SECONDS=str(DEAD_AFTER)
        )
        migrate(env)
        fake.script_for(
            "kill-me", text=live_workers.reply_text(12), chunks=400, delay=0.05, max_wait=30
        )
        with (
            daphne_worker(env, tmp_path / "a.log") as a,
            daphne_worker(env, tmp_path / "b.log") as b,
        ):
            browser = browser_class()
            browser.get(f"{a.url}/streaming-demo")
            message_id, conversation_id = live_workers.send(browser, a.url, "kill-me please")
            reader = sse_reader_class(browser, b.url, message_id, timeout=30)
            thread, outcome = _read_in_background(reader)
            _wait_for_text(reader, 30)

            a.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            thread.join(30)

            assert "error" not in outcome, outcome
            ended_after = outcome["ended_at"] - killed_at  # type: ignore[operator]
            print(f"killed worker's reply ended on the other {ended_after:.1f} s after SIGKILL")  # noqa: T201
            # Dead after DEAD_AFTER without a beat, found by a sweep every quarter of that.
            assert ended_after <= DEAD_AFTER * 1.25 + 3, f"ended {ended_after:.1f} s after the kill"
            assert 'data-status="error"' in reader.final and "Interrupted" in reader.final
            row = message_row(env, message_id)
            assert row["ended_reason"] == "interrupted"
            # Everything readers were sent is kept, not just the last database flush.
            assert row["content"] == reader.text and len(reader.text) > 0
            # The conversation takes the next message (on the surviving worker).
            fake.script_for("after the kill", text="Still here.", chunks=2)
            next_id, _ = send_to(browser, b.url, conversation_id, "after the kill")
            after = sse_reader_class(browser, b.url, next_id, timeout=30).read_to_end()
            assert 'data-status="complete"' in after.final and "Still here." in after.final


def send_to(browser, worker: str, conversation_id: str, text: str) -> tuple[int, str]:
    status, html = browser.post(
        f"{worker}/streaming-demo/messages",
        {"action": "send", "message": text, "model": MODEL, "conversation": conversation_id},
    )
    assert status == 200, html
    import re

    found = re.search(r'data-status="streaming" data-message-id="(\d+)"', html)
    assert found, html
    return int(found[1]), conversation_id


def test_sigterm_drains_a_worker_a_short_reply_finishes_and_new_sends_are_refused(
    tmp_path,
    redis_url,
    browser_class,
    daphne_worker,
    fake_upstream_server,
    live_workers,
    message_row,
    migrate,
    sse_reader_class,
):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with fake_upstream_server() as fake:
        env = live_workers.workers_env(tmp_path, redis_url, fake, CHAT_SHUTDOWN_GRACE_SECONDS="10")
        migrate(env)
        text = live_workers.reply_text(1)
        fake.script_for("drain-me", text=text, chunks=100, delay=0.05)  # ~5 s
        with (
            daphne_worker(env, tmp_path / "a.log") as a,
            daphne_worker(env, tmp_path / "b.log") as b,
        ):
            browser = browser_class()
            browser.get(f"{a.url}/streaming-demo")
            message_id, _ = live_workers.send(browser, a.url, "drain-me please")
            reader = sse_reader_class(browser, b.url, message_id, timeout=30)
            thread, outcome = _read_in_background(reader)
            _wait_for_text(reader, 1)

            a.process.send_signal(signal.SIGTERM)
            refused = _refused_while_draining(browser, a.url)
            thread.join(30)
            a.process.wait(20)

            assert refused is not None, "a draining worker must refuse new replies"
            status, body = refused
            assert status == 503 and "restarting" in body
            assert reader.text == text and 'data-status="complete"' in reader.final
            assert message_row(env, message_id)["ended_reason"] == "completed"


def _refused_while_draining(browser, worker: str) -> tuple[int, str] | None:
    """POST a send to a worker that is shutting down; its answer while it still answers."""
    import urllib.error
    import urllib.parse
    import urllib.request

    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{worker}/streaming-demo/messages",
            data=urllib.parse.urlencode(
                {"action": "send", "message": "one more", "model": MODEL}
            ).encode(),
            headers={"HX-Request": "true", "X-CSRFToken": browser.cookie("csrftoken")},
        )
        try:
            with browser.opener.open(request, timeout=2) as response:
                html = response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                return None  # it has stopped listening: too late to ask
            continue
        except OSError:
            # Daphne cancels the requests in flight when it starts shutting down, and one that
            # arrives at that instant is left without an answer: ask again.
            continue
        assert "data-status" not in html, "a draining worker started a reply"
    return None


def test_a_redis_restart_mid_reply_ends_it_honestly_and_the_next_reply_works(
    tmp_path,
    browser_class,
    daphne_worker,
    fake_upstream_server,
    live_workers,
    message_row,
    migrate,
    redis_server,
    sse_reader_class,
):
    with fake_upstream_server() as fake, redis_server(tmp_path) as (url, server):
        # A rate limit, so sends go through the limiter's cache (Redis) as they do in production.
        env = live_workers.workers_env(tmp_path, url, fake, CHAT_RATE_LIMIT="1000/m")
        migrate(env)
        fake.script_for(
            "redis-outage-reply",
            text=live_workers.reply_text(12),
            chunks=400,
            delay=0.05,
            max_wait=30,
        )
        with (
            daphne_worker(env, tmp_path / "a.log") as a,
            daphne_worker(env, tmp_path / "b.log") as b,
        ):
            browser = browser_class()
            browser.get(f"{a.url}/streaming-demo")
            message_id, _ = live_workers.send(browser, a.url, "redis-outage-reply please")
            reader = sse_reader_class(browser, b.url, message_id, timeout=30)
            thread, outcome = _read_in_background(reader)
            _wait_for_text(reader, 10)

            server.kill()
            server.wait(5)
            port = int(url.rsplit(":", 1)[1].split("/")[0])

            # While Redis is down: a clear 503, never a 500, over HTTP and WebSocket.
            status, body = _post_status(browser, a.url, "outage refused")
            assert status == 503 and "unavailable" in body, (status, body)
            with live_workers.ws_connect(browser, b.url) as socket:
                socket.send(json.dumps({"action": "send", "message": "x", "model": MODEL}))
                frame = str(socket.recv(timeout=15))
            assert "unavailable" in frame, frame

            # The live reply ends with an honest reason and its text; the reader gets it.
            thread.join(30)
            assert "error" not in outcome, outcome
            row = message_row(env, message_id)
            assert row["ended_reason"] == "service_error", row
            assert live_workers.reply_text(12).startswith(row["content"]) and row[
                "content"
            ].startswith(reader.text)
            assert "Service unavailable" in reader.final

            with redis_server(tmp_path, port=port):
                # Everything recovers by itself: the next reply streams to the other worker.
                fake.script_for("after the outage", text="Back again.", chunks=2)
                deadline = time.monotonic() + 20
                while (status := _post_status(browser, a.url, "after the outage")[0]) != 200:
                    assert time.monotonic() < deadline, status
                    time.sleep(0.5)
                next_id = _last_streaming_id(browser, a.url)
                after = sse_reader_class(browser, b.url, next_id, timeout=30).read_to_end()
                assert 'data-status="complete"' in after.final and "Back again." in after.final
                assert message_row(env, next_id)["content"] == "Back again."


def _post_status(browser, worker: str, text: str) -> tuple[int, str]:
    import urllib.error

    try:
        status, html = browser.post(
            f"{worker}/streaming-demo/messages", {"action": "send", "message": text, "model": MODEL}
        )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    browser.last_html = html  # type: ignore[attr-defined]
    return status, html


def _last_streaming_id(browser, worker: str) -> int:
    import re

    found = re.search(
        r'data-status="streaming" data-message-id="(\d+)"',
        browser.last_html,  # type: ignore[attr-defined]
    )
    assert found
    return int(found[1])
