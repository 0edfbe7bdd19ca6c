"""Several real Daphne workers on one Redis (and PostgreSQL in the suite's PostgreSQL run), with
real-world timing: long silences, stops through the other worker, a killed worker, a drained one
and a Redis restart. Replies come from the fake upstream through the real OpenAI SDK.

The long waits (a 20 s first token, a 20 s stall, sockets idle for 60 s) start when the module's
workers start and run while the other tests of the module do, so the module takes about a minute
and a half rather than several minutes.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]

STOPS = int(os.environ.get("CHAT_TEST_STOPS", "200"))

# The workers, the fake upstream and the long-silence scenario are the module's `cluster`
# fixture (tests/replies/conftest.py, from tests/support/workers.py).


# --- Stop always stops ---------------------------------------------------------------------------


class StopsHeard:
    """A subscriber of the stop channel in the test process: when each stop was published."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.heard: dict[int, float] = {}
        self.pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("chatsite:stops")
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        import redis

        with contextlib.suppress(redis.ConnectionError, ValueError):  # closed by the test
            while self.pubsub.subscribed:
                message = self.pubsub.get_message(timeout=0.5)
                if message:
                    self.heard.setdefault(int(message["data"]), time.monotonic())


@pytest.fixture
def stop_one(live_workers, browser_class, sse_reader_class, deltas, message_row):
    def _stop_one(cluster, stops: StopsHeard, n: int) -> dict[str, object]:
        marker = f"stop-me-{n}-{random.randrange(10**9)}"
        browser = browser_class()
        browser.get(f"{cluster.a.url}/streaming-demo")
        message_id, conversation_id = live_workers.send(browser, cluster.a.url, f"{marker} please")
        reader = sse_reader_class(browser, cluster.b.url, message_id, timeout=30)
        # Stop after the first text, at a random point of the stream.
        event = {}
        while "data-seq" not in event.get("data", ""):
            event = live_workers.next_event(reader)
        reader.pieces.extend(deltas(event["data"]))
        time.sleep(random.uniform(0, 0.4))
        stopped_at = time.monotonic()
        status, _ = browser.post(
            f"{cluster.b.url}/streaming-demo/messages",
            {"action": "stop", "conversation": conversation_id},
        )
        assert status == 204
        reader.read_to_end()
        request = cluster.fake.request_with(marker)
        assert request is not None
        deadline = time.monotonic() + 5
        while (request.ended_at is None or message_id not in stops.heard) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        ended_at = request.ended_at or float("inf")
        return {
            "message_id": message_id,
            # From the stop signal leaving worker B (its publish, heard by the test too) ...
            "upstream_closed_after": ended_at - stops.heard.get(message_id, float("inf")),
            # ... and from the moment the user's POST left the browser.
            "upstream_closed_after_post": ended_at - stopped_at,
            "upstream_cut": request.client_gone,
            "read_text": reader.text,
            "final": reader.final,
            "row": message_row(cluster.env, message_id),
        }

    return _stop_one


def test_every_stop_through_the_other_worker_ends_the_upstream_request_within_a_second(
    cluster, redis_url, live_workers, stop_one
):
    # Long replies that would run ~20 s: each is stopped from the worker that does not run it.
    cluster.fake.script_for(
        "stop-me-", text=live_workers.reply_text(12), chunks=400, delay=0.05, max_wait=30
    )
    stops = StopsHeard(redis_url)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda n: stop_one(cluster, stops, n), range(STOPS)))
    stops.pubsub.close()

    after_stop = sorted(o["upstream_closed_after"] for o in outcomes)
    after_post = sorted(o["upstream_closed_after_post"] for o in outcomes)
    figures = (
        f"upstream closed after the stop: median {after_stop[STOPS // 2]:.3f} s, "
        f"max {after_stop[-1]:.3f} s; after the POST: median {after_post[STOPS // 2]:.3f} s, "
        f"max {after_post[-1]:.3f} s"
    )
    print(figures)  # noqa: T201 - the figures go into docs/reliability.md
    late = [o for o in outcomes if not o["upstream_closed_after"] <= 1.0]
    assert not late, f"{len(late)}/{STOPS} outlived their stop by > 1 s ({figures}): {late[:2]}"
    # The stop's whole trip, the other worker's HTTP handling included, stays short too.
    assert after_post[-1] <= 5.0, figures
    assert all(o["upstream_cut"] for o in outcomes), "every reply was cut short by its stop"
    for outcome in outcomes:
        row = outcome["row"]
        assert (row["status"], row["ended_reason"]) == ("stopped", "stopped"), outcome
        # What was recorded is exactly what the reader on the other worker was sent.
        assert row["content"] == outcome["read_text"], outcome
        assert 'data-status="stopped"' in outcome["final"]


# --- Long silences -------------------------------------------------------------------------------


def test_long_silences_are_read_exactly_from_the_other_worker_and_idle_sockets_stay_open(
    cluster, live_workers, message_row
):
    silences = cluster.silences
    for thread in silences.threads:
        thread.join(120)
    assert not silences.errors, silences.errors

    sse = silences.results["sse"]  # type: ignore[assignment]
    ws_text, ws_final = silences.results["ws"]  # type: ignore[misc]
    assert sse.text == live_workers.SILENT_TEXT
    assert ws_text == live_workers.SILENT_TEXT
    assert 'data-status="complete"' in sse.final and 'data-status="complete"' in ws_final
    row = message_row(cluster.env, silences.message_id)
    assert (row["ended_reason"], row["content"]) == ("completed", live_workers.SILENT_TEXT)
    for name in ("idle-a", "idle-b"):
        outcome = silences.results[name]
        assert outcome.get("pong") is True and outcome["open_for"] >= 59, (name, outcome)  # type: ignore[union-attr]
