"""A single worker without Redis killed mid-reply (SIGKILL) and started again: the reply ends as
`interrupted` with the text its reader saw, less at most a fraction of a second of it (what was
sent since the last progress save, CHAT_FLUSH_SECONDS; issue 22.5)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import pytest

pytestmark = pytest.mark.timeout(120)

CHUNK_SECONDS = 0.05  # 20 tokens a second, a real model's pace
# The default save interval without Redis, plus the coalescing window and a loaded machine's lag.
LOST_AT_MOST_SECONDS = 0.6


def test_a_crash_loses_at_most_a_fraction_of_a_second_of_what_the_reader_saw(
    tmp_path,
    fake_upstream_server,
    browser_class,
    daphne_worker,
    migrate,
    message_row,
    sse_reader_class,
    app_env,
    live_workers,
):
    with fake_upstream_server() as fake:
        env = app_env(
            tmp_path,
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=fake.openai_base_url,
            OPENAI_MODELS="gpt-4.1-mini",
            CHAT_PROVIDER_MAX_RETRIES="0",
            CHAT_WORKER_DEAD_AFTER_SECONDS="2",
        )
        env.pop("REDIS_URL", None)
        env.pop("CHAT_FLUSH_SECONDS", None)  # the default is what is under test
        env.pop("DATABASE_URL", None)  # one process, its own SQLite file, as `make run` serves
        migrate(env)
        fake.script_for(
            "crash", text=live_workers.reply_text(12), chunks=400, delay=CHUNK_SECONDS, max_wait=30
        )
        browser = browser_class()
        with daphne_worker(env, tmp_path / "a.log") as worker:
            browser.get(f"{worker.url}/streaming-demo")
            message_id, _ = live_workers.send(browser, worker.url, "crash please")
            reader = sse_reader_class(browser, worker.url, message_id, timeout=30)
            threading.Thread(target=_read_quietly, args=(reader,), daemon=True).start()
            seen: list[tuple[float, int]] = []  # (when, how many characters the reader had)
            saves: list[float] = []  # when the stored text grew
            saved_chars = 0
            deadline = time.monotonic() + 30
            while len(reader.text) < 600:
                assert time.monotonic() < deadline, "the reply did not stream"
                seen.append((time.monotonic(), len(reader.text)))
                if (chars := len(str(message_row(env, message_id)["content"]))) > saved_chars:
                    saved_chars = chars
                    saves.append(time.monotonic())
                time.sleep(0.01)
            worker.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            worker.process.wait(10)
            seen.append((killed_at, len(reader.text)))
            text_seen = reader.text

        with daphne_worker(env, tmp_path / "b.log"):
            deadline = time.monotonic() + 30
            while (row := message_row(env, message_id))["status"] == "streaming":
                assert time.monotonic() < deadline, "the restarted worker did not end the reply"
                time.sleep(0.2)

    # While it streamed, the stored text never fell further behind than that.
    gaps = [later - earlier for earlier, later in zip(saves, saves[1:], strict=False)]
    print(f"{len(saves)} saves seen, the longest gap {max(gaps):.2f} s")  # noqa: T201
    assert len(saves) >= 3 and max(gaps) <= LOST_AT_MOST_SECONDS
    assert row["ended_reason"] == "interrupted"
    stored = str(row["content"])
    assert text_seen.startswith(stored) and stored, (len(stored), len(text_seen))
    # When the reader first had text the database lost: how long before the kill that was.
    first_unsaved = next((when for when, chars in seen if chars > len(stored)), killed_at)
    lost_seconds = killed_at - first_unsaved
    print(  # noqa: T201
        f"saved {len(stored)} of {len(text_seen)} characters seen; "
        f"lost what the reader saw in the last {lost_seconds:.2f} s"
    )
    assert lost_seconds <= LOST_AT_MOST_SECONDS


def _read_quietly(reader) -> None:
    with contextlib.suppress(Exception):  # the server is killed under it
        reader.read_to_end()
