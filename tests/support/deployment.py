"""The production recipe as the end-to-end tests run it: `scripts/run_prod.py` with its workers
behind nginx, on PostgreSQL and a Redis of its own, and the readers that check what comes through
the proxy (tests/e2e/test_production.py)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.with_postgres import PostgresMissing, running_postgres
from tests.support.fake_upstream import FakeUpstream, running_fake_upstream
from tests.support.servers import IN_CI, REPO, Browser, app_env, free_port, need
from tests.support.transport import deltas

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

METRICS_TOKEN = "metrics-token-for-tests"
TOKENS_PER_SECOND = 25  # a demo reply (~120 tokens) streams for about five seconds
START_SECONDS = 300  # migrate, collectstatic and four Python processes on a busy machine


class RedisServer:
    """A redis-server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@dataclass
class Deployment:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    database_url: str
    redis: RedisServer
    worker_ports: list[int] = field(default_factory=list)
    silences: Silences | None = None

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.url).port or 0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_lines(self, path_pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(path_pattern, line)]


def run_prod(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "run_prod.py"), "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_until_serving(deployment: Deployment) -> None:
    deadline = time.monotonic() + START_SECONDS
    while "run_prod: serving " not in deployment.log():
        if deployment.process.poll() is not None:
            raise RuntimeError(f"run_prod.py exited:\n{deployment.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"run_prod.py did not start:\n{deployment.log()[-4000:]}")
        time.sleep(0.2)
    deployment.worker_ports = [
        int(port)
        for port in re.findall(r"worker \d+ \(pid \d+\) on 127\.0\.0\.1:(\d+)", deployment.log())
    ]


def deployment_env(data_dir: Path, services: Services, workers: int) -> dict[str, str]:
    return app_env(
        data_dir,
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis.url,
        DJANGO_STATIC_ROOT=str(services.static_root),
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=services.upstream.openai_base_url,
        OPENAI_MODELS="gpt-4.1-mini",
        CHAT_DEFAULT_MODEL="demo:demo",
        CHAT_PROVIDER_MAX_RETRIES="0",
        CHAT_WORKERS=str(workers),
        CHAT_METRICS_TOKEN=METRICS_TOKEN,
        CHAT_DEMO_TOKENS_PER_SECOND=str(TOKENS_PER_SECOND),
        CHAT_IP_RATE_LIMIT="",
        CHAT_SHUTDOWN_GRACE_SECONDS="15",
    )


@dataclass
class Services:
    database_url: str
    redis: RedisServer
    static_root: Path  # shared: the second deployment finds the static files up to date
    upstream: FakeUpstream  # the OpenAI provider's, for replies with long silences


@contextlib.contextmanager
def running_services() -> Iterator[Services]:
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-prod-"))
    redis = RedisServer(workdir)
    need("nginx")
    try:
        with running_postgres() as database_url, running_fake_upstream() as upstream:
            redis.start()
            try:
                yield Services(database_url, redis, workdir / "static", upstream)
            finally:
                redis.stop()
    except PostgresMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def deployed(services: Services, *, workers: int) -> Iterator[Deployment]:
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-prod-data-"))
    port = free_port()
    log_path = data_dir / "run_prod.log"
    deployment = Deployment(
        url=f"http://127.0.0.1:{port}",
        process=run_prod(deployment_env(data_dir, services, workers=workers), port, log_path),
        log_path=log_path,
        database_url=services.database_url,
        redis=services.redis,
    )
    try:
        wait_until_serving(deployment)
        yield deployment
    finally:
        if deployment.process.poll() is None:
            deployment.process.send_signal(signal.SIGTERM)
            try:
                deployment.process.wait(60)
            except subprocess.TimeoutExpired:
                deployment.process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- Helpers ------------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def start_reply(
    browser: Browser, base_url: str, prompt: str, model: str = "demo:demo"
) -> tuple[int, str]:
    browser.get(f"{base_url}/streaming-demo")
    status, html = browser.post(
        f"{base_url}/streaming-demo/messages",
        {"action": "send", "message": prompt, "model": model},
    )
    assert status == 200, html
    message_id = int(re.search(r'data-status="streaming" data-message-id="(\d+)"', html).group(1))
    conversation_id = re.search(r'name="conversation" value="([0-9a-f-]+)"', html).group(1)
    return message_id, conversation_id


@dataclass
class Reading:
    text: str = ""
    stamps: list[float] = field(default_factory=list)  # when each text fragment arrived
    ended_at: float = 0.0
    final: str = ""


def next_event(response: Any) -> dict[str, str]:
    """One server-sent event; its data lines joined with newlines, as EventSource does."""
    fields: dict[str, list[str]] = {}
    while True:
        line = response.readline().decode()
        if not line:
            raise EOFError("the event stream ended without the finished reply")
        line = line.rstrip("\n")
        if not line:
            if fields:
                return {name: "\n".join(values) for name, values in fields.items()}
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


def read_sse(
    browser: Browser, base_url: str, message_id: int, reading: Reading, timeout: float = 15
) -> None:
    host, port = urllib.parse.urlsplit(base_url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
    connection.request(
        "GET", f"/streaming-demo/replies/{message_id}/events", headers={"Cookie": cookies}
    )
    response = connection.getresponse()
    try:
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        while True:
            data = next_event(response).get("data", "")
            if "<article" in data:
                reading.ended_at, reading.final = time.monotonic(), data
                return
            pieces = deltas(data)
            if pieces:
                reading.stamps.append(time.monotonic())
                reading.text += "".join(text for _, text in pieces)
    finally:
        connection.close()


def assert_streamed_in_steps(reading: Reading, full: str) -> None:
    assert reading.text == full, "the reply arrived with text lost, doubled or out of order"
    assert len(reading.stamps) >= 5, f"the reply arrived in {len(reading.stamps)} pieces"
    # At 25 tokens a second a demo reply takes about five seconds: a proxy that buffered it
    # would deliver the first text together with the last.
    assert reading.ended_at - reading.stamps[0] > 2.0, "the first text came with the end"


# --- Long silences, read in the background -------------------------------------------------------

SILENT_TEXT = "A reasoning model thinks first, then pauses mid-reply, and every word still arrives."


@dataclass
class Silences:
    message_id: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def run(self, name: str, target: Any, *args: Any) -> None:
        def body() -> None:
            try:
                self.results[name] = target(*args)
            except BaseException as exc:  # reported by the test that joins
                self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


def ws_connect(browser: Browser, base_url: str) -> Any:
    from websockets.sync.client import connect

    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
    return connect(
        base_url.replace("http://", "ws://") + "/ws/chat/",
        origin=base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookies},
        open_timeout=15,
    )


def ws_read(browser: Browser, base_url: str, message_id: int, timeout: float) -> Reading:
    reading = Reading()
    with ws_connect(browser, base_url) as socket_:
        socket_.send(json.dumps({"action": "watch", "message_id": message_id, "after": 0}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = socket_.recv(timeout=deadline - time.monotonic())
            if pieces := deltas(frame):
                reading.stamps.append(time.monotonic())
                reading.text += "".join(text for _, text in pieces)
            if "<article" in frame and 'data-status="streaming"' not in frame:
                reading.ended_at, reading.final = time.monotonic(), frame
                return reading
    raise TimeoutError("the reply did not end over the WebSocket")


def idle_socket_survives(browser: Browser, base_url: str, seconds: float) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed

    opened = time.monotonic()
    try:
        with ws_connect(browser, base_url) as socket_:
            try:
                frame = socket_.recv(timeout=seconds)
                return {"unexpected frame": frame}
            except TimeoutError:
                pass
            pong = socket_.ping()
            return {"open_for": time.monotonic() - opened, "pong": pong.wait(10)}
    except ConnectionClosed as exc:
        return {"closed": exc.rcvd.code if exc.rcvd else None, "after": time.monotonic() - opened}


def sse_read(browser: Browser, base_url: str, message_id: int) -> Reading:
    reading = Reading()
    read_sse(browser, base_url, message_id, reading, timeout=90)
    return reading


def silences_start(deployment: Deployment, upstream: FakeUpstream) -> Silences:
    """A reply whose first token takes 20 s and which then stalls 20 s — longer than any Redis
    timeout — read through the proxy over SSE (twice: round robin puts one reader on each worker)
    and WebSocket; and idle WebSockets that must stay open for a minute."""
    silences = Silences()
    upstream.script_for(
        "slow-silence", text=SILENT_TEXT, chunks=8, first_delay=20, pause_after=4,
        pause_seconds=20, max_wait=30,
    )  # fmt: skip
    browser = Browser()
    silences.message_id, _ = start_reply(
        browser, deployment.url, "slow-silence please", model="openai:gpt-4.1-mini"
    )
    # The sockets first, then the two SSE readers one after the other with nothing in between:
    # round robin (its state shared by nginx's processes) then gives them different workers.
    # Started together, a socket's upgrade could come between them and put both on one.
    silences.run("ws", ws_read, browser, deployment.url, silences.message_id, 90)
    for name in ("idle-1", "idle-2"):
        silences.run(name, idle_socket_survives, browser, deployment.url, 60)
    time.sleep(2)  # the first token is 20 s away: every reader is in place long before it
    for name in ("sse-1", "sse-2"):
        silences.run(name, sse_read, browser, deployment.url, silences.message_id)
        time.sleep(1)
    return silences
