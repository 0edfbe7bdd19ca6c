"""Real Daphne workers on one Redis (and PostgreSQL in the suite's PostgreSQL run), driven as a
browser drives them: their environment, the page's send, the WebSocket, and the long-silence
scenario the resilience tests start when their workers do."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.fake_upstream import FakeUpstream, running_fake_upstream
from tests.support.servers import (
    Browser,
    SSEReader,
    Worker,
    app_env,
    daphne_worker,
    migrate,
    read_event,
)
from tests.support.transport import deltas

MODEL = "openai:gpt-4.1-mini"
WORDS = (
    "Redis streams let every worker read what any job writes while the reply is still being "
    "generated, and a reader that reconnects resumes from the last sequence number it has. "
)


def reply_text(n: int) -> str:
    return (WORDS * n).strip()


def workers_env(tmp_path: Path, redis_url: str, fake: FakeUpstream, **extra: str) -> dict[str, str]:
    env = app_env(
        tmp_path,
        REDIS_URL=redis_url,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake.openai_base_url,
        OPENAI_MODELS="gpt-4.1-mini",
        CHAT_PROVIDER_MAX_RETRIES="0",
        **extra,
    )
    if os.environ.get("DATABASE_URL"):
        # The suite's PostgreSQL run: the workers share PostgreSQL, as a scaled-out site does.
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return env


def send(browser: Browser, worker: str, text: str) -> tuple[int, str]:
    """Send a message as the page does (htmx POST); the new reply's id and its conversation."""
    status, html = browser.post(
        f"{worker}/streaming-demo/messages", {"action": "send", "message": text, "model": MODEL}
    )
    assert status == 200, html
    message_id = re.search(r'data-status="streaming" data-message-id="(\d+)"', html)
    conversation_id = re.search(r'name="conversation" value="([0-9a-f-]+)"', html)
    assert message_id and conversation_id, html
    return int(message_id[1]), conversation_id[1]


def ws_connect(browser: Browser, worker: str) -> ClientConnection:
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
    return connect(
        worker.replace("http://", "ws://") + "/ws/chat/",
        additional_headers={"Cookie": cookies, "Origin": worker},
        open_timeout=10,
        ping_interval=None,  # our own pings only: the test watches the server close nothing
    )


def ws_read_reply(socket: ClientConnection, message_id: int, *, timeout: float) -> tuple[str, str]:
    """Watch a reply over an open WebSocket: (its text as sent, the final fragment)."""
    socket.send(json.dumps({"action": "watch", "message_id": message_id, "after": 0}))
    pieces: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = str(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if f'id="msg-{message_id}"' in frame and "<article" in frame:
            return "".join(pieces), frame
        pieces.extend(text for _, text in deltas(frame))


@dataclass
class Silences:
    """The long-silence scenario, run in threads from the module's start."""

    message_id: int = 0
    results: dict[str, object] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, name: str, target, *args) -> None:  # type: ignore[no-untyped-def]
        def body() -> None:
            try:
                self.results[name] = target(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


SILENT_TEXT = reply_text(3)


def idle_socket_survives(browser: Browser, worker: str, seconds: float) -> dict[str, object]:
    opened = time.monotonic()
    try:
        with ws_connect(browser, worker) as socket:
            while (left := opened + seconds - time.monotonic()) > 0:
                try:
                    frame = socket.recv(timeout=left)
                except TimeoutError:
                    break
                return {"unexpected frame": frame}
            pong = socket.ping()
            return {"open_for": time.monotonic() - opened, "pong": pong.wait(10)}
    except ConnectionClosed as exc:
        return {"closed": exc.rcvd.code if exc.rcvd else None, "after": time.monotonic() - opened}


def ws_read(browser: Browser, worker: str, message_id: int, timeout: float) -> tuple[str, str]:
    with ws_connect(browser, worker) as socket:
        return ws_read_reply(socket, message_id, timeout=timeout)


@dataclass
class Cluster:
    env: dict[str, str]
    fake: FakeUpstream
    a: Worker
    b: Worker
    silences: Silences


@contextlib.contextmanager
def running_cluster(tmp_path_factory, redis_url: str) -> Iterator[Cluster]:
    """Two workers on one Redis and the fake upstream, the long-silence scenario started."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    tmp_path = tmp_path_factory.mktemp("cluster")
    with running_fake_upstream() as fake:
        env = workers_env(tmp_path, redis_url, fake)
        migrate(env)
        with (
            daphne_worker(env, tmp_path / "a.log") as a,
            daphne_worker(env, tmp_path / "b.log") as b,
        ):
            silences = Silences()
            # A reasoning model's wait before the first token, and a stall in the middle: both
            # longer than any Redis timeout, read from the worker that does not run the job.
            fake.script_for(
                "slow-silence",
                text=SILENT_TEXT,
                chunks=12,
                delay=0.02,
                first_delay=20,
                pause_after=6,
                pause_seconds=20,
                max_wait=30,
            )
            browser = Browser()
            browser.get(f"{a.url}/streaming-demo")
            silences.message_id, _ = send(browser, a.url, "slow-silence please")
            reader = SSEReader(browser, b.url, silences.message_id, timeout=60)
            silences.run("sse", reader.read_to_end)
            silences.run("ws", ws_read, browser, b.url, silences.message_id, 60)
            for name, worker in (("idle-a", a.url), ("idle-b", b.url)):
                silences.run(name, idle_socket_survives, browser, worker, 60)
            yield Cluster(env, fake, a, b, silences)
            for thread in silences.threads:
                thread.join(90)


def next_event(reader: SSEReader) -> dict[str, str]:
    return read_event(reader.response)
