"""The production recipe, end to end: `scripts/run_prod.py` (what `make run-prod` runs) with two
Daphne workers behind the real nginx, against a throwaway PostgreSQL and a redis-server that the
tests start, stop and restart. Everything goes through the proxy, as a visitor's browser does.

One deployment serves the module (starting it migrates, collects static files and boots the
workers and nginx); the last tests end it, with SIGTERM and by killing a worker. These tests run
in the e2e group, once per `make test`: the recipe always uses PostgreSQL, so the suite's second,
PostgreSQL pass has nothing to add.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
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

import brotli
import pytest

from chat.providers.demo import demo_reply
from scripts.with_postgres import PostgresMissing, running_postgres
from tests.conftest import IN_CI, free_port, need
from tests.fake_upstream import FakeUpstream, running_fake_upstream
from tests.helpers import deltas
from tests.servers import REPO, Browser, app_env

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


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
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


@pytest.fixture(scope="module")
def production(services: Services) -> Iterator[Deployment]:
    """Two workers behind nginx; ended by the SIGTERM test. A reply with long silences starts
    with it and is read in the background while the other tests run."""
    with deployed(services, workers=2) as deployment:
        deployment.silences = silences_start(deployment, services.upstream)
        yield deployment
        for thread in deployment.silences.threads:
            thread.join(90)


@pytest.fixture(scope="module")
def one_worker(services: Services) -> Iterator[Deployment]:
    """A second deployment for the tests that break things (Redis, a worker); it finds the
    database migrated and the static files collected."""
    with deployed(services, workers=1) as deployment:
        yield deployment


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


# --- Tests --------------------------------------------------------------------------------------


def test_production_refuses_to_start_without_database_and_redis(tmp_path):
    env = app_env(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_prod.py"), "--port", str(free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "DATABASE_URL is not set" in result.stderr and "REDIS_URL is not set" in result.stderr
    assert not (tmp_path / "run").exists(), "it started something before refusing"


def test_health_and_readiness_through_the_proxy(production: Deployment):
    status, headers, body = get(f"{production.url}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["Server"] == "nginx" and "Set-Cookie" not in headers
    for _ in production.worker_ports:  # round robin: each worker answers once
        status, _, body = get(f"{production.url}/readyz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "database": "ok", "redis": "ok"}
    assert len(production.worker_ports) == 2


def test_static_files_are_hashed_long_cached_and_compressed_through_the_proxy(
    production: Deployment,
):
    _, _, page = get(f"{production.url}/streaming-demo")
    scripts = re.findall(r'src="(/static/chat/chat\.[0-9a-f]{12}\.js)"', page.decode())
    assert scripts, "the page does not name a hashed chat.js"
    url = f"{production.url}{scripts[0]}"

    status, plain_headers, plain = get(url, {"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in plain_headers
    assert plain_headers["Cache-Control"] == "max-age=31536000, public, immutable"
    assert plain_headers["X-Content-Type-Options"] == "nosniff"
    assert plain_headers["Content-Type"].startswith("text/javascript")

    _, br_headers, br_body = get(url, {"Accept-Encoding": "gzip, br"})
    assert br_headers["Content-Encoding"] == "br" and "Accept-Encoding" in br_headers["Vary"]
    assert brotli.decompress(br_body) == plain and len(br_body) < len(plain)

    _, gz_headers, gz_body = get(url, {"Accept-Encoding": "gzip"})
    assert gz_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gz_body) == plain
    assert gz_headers["Cache-Control"] == "max-age=31536000, public, immutable"


def test_a_websocket_reply_streams_token_by_token_through_the_proxy(production: Deployment):
    from websockets.sync.client import connect

    prompt = "Stream through the proxy over a WebSocket"
    full = demo_reply(prompt)
    browser = Browser()
    browser.get(f"{production.url}/streaming-demo")
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
    ws_url = production.url.replace("http://", "ws://") + "/ws/chat/"
    with connect(
        ws_url, origin=production.url, additional_headers={"Cookie": cookies}, open_timeout=15
    ) as socket_:  # type: ignore[arg-type]
        socket_.send(json.dumps({"action": "send", "message": prompt, "model": "demo:demo"}))
        started = socket_.recv(timeout=15)
        message_id = int(
            re.search(r'data-status="streaming" data-message-id="(\d+)"', started).group(1)
        )
        socket_.send(json.dumps({"action": "watch", "message_id": message_id, "after": 0}))
        reading = Reading()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = socket_.recv(timeout=30)
            pieces = deltas(frame)
            if pieces:
                reading.stamps.append(time.monotonic())
                reading.text += "".join(text for _, text in pieces)
            if 'data-status="complete"' in frame:
                reading.ended_at = time.monotonic()
                break
    assert_streamed_in_steps(reading, full)


def test_sse_through_the_proxy_streams_unbuffered_from_either_worker(production: Deployment):
    prompt = "Stream through the proxy over server-sent events"
    full = demo_reply(prompt)
    browser = Browser()
    message_id, _ = start_reply(browser, production.url, prompt)
    readings = [Reading(), Reading()]
    # Two readers at once: round robin sends them to different workers.
    threads = [
        threading.Thread(target=read_sse, args=(browser, production.url, message_id, reading))
        for reading in readings
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for reading in readings:
        assert_streamed_in_steps(reading, full)
        assert 'data-status="complete"' in reading.final

    # nginx logs each request when it ends, with the worker that served it.
    def served_by(pattern: str) -> list[str]:
        return re.findall(r"upstream=(\S+)", "\n".join(production.access_lines(pattern)))

    deadline = time.monotonic() + 10
    while len(events := served_by(rf'"GET /streaming-demo/replies/{message_id}/events ')) < 2:
        assert time.monotonic() < deadline, production.log()[-3000:]
        time.sleep(0.2)
    (post,) = served_by(r'"POST /streaming-demo/messages ')[-1:]
    assert len(set(events)) == 2, f"both readers were served by one worker: {events}"
    assert post in events and len(set(events) - {post}) == 1, (
        "a reply started on one worker was read on the other"
    )


def test_long_silences_through_the_proxy_are_read_exactly_and_idle_sockets_stay_open(
    production: Deployment,
):
    silences = production.silences
    assert silences is not None
    for thread in silences.threads:
        thread.join(120)
    assert not silences.errors, silences.errors
    for name in ("sse-1", "sse-2", "ws"):
        reading = silences.results[name]
        assert reading.text == SILENT_TEXT, name
        assert 'data-status="complete"' in reading.final, name
        # Text before the stall, the stall, text after it: the sockets lived through both waits.
        assert reading.stamps[-1] - reading.stamps[0] > 15, (name, reading.stamps)
    for name in ("idle-1", "idle-2"):
        outcome = silences.results[name]
        assert outcome.get("pong") is True and outcome["open_for"] >= 59, (name, outcome)
    events = re.findall(
        r"upstream=(\S+)",
        "\n".join(
            production.access_lines(rf'"GET /streaming-demo/replies/{silences.message_id}/events ')
        ),
    )
    assert len(set(events)) == 2, f"the readers were not spread over both workers: {events}"


def test_metrics_are_protected_and_count_replies_across_workers(production: Deployment):
    status, _, _ = get(f"{production.url}/metrics")
    assert status == 401
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    _, _, before = get(f"{production.url}/metrics", auth)
    completed_before = metric(before.decode(), "chat_replies_ended_total", '{reason="completed"}')

    browser = Browser()
    message_id, _ = start_reply(browser, production.url, "Count this reply")
    read_sse(browser, production.url, message_id, reading := Reading())
    assert 'data-status="complete"' in reading.final

    # Whichever worker answers, it sums every worker's counts (prometheus multi-process files).
    for _ in production.worker_ports:
        status, headers, body = get(f"{production.url}/metrics", auth)
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert (
            metric(text, "chat_replies_ended_total", '{reason="completed"}') == completed_before + 1
        )
        assert metric(text, "chat_time_to_first_token_seconds_count", '{provider="demo"}') >= 1
        assert metric(text, "chat_output_tokens_total", '{provider="demo"}') > 0
        assert metric(text, "chat_live_replies") == 0
        assert metric(text, "chat_readers", '{transport="sse"}') == 0


def test_chromium_through_the_proxy_streams_over_websocket_and_sse(
    production: Deployment, browser: Any
):
    chromium_streams_a_reply(browser, production, "/streaming-demo", "websocket")
    chromium_streams_a_reply(browser, production, "/streaming-demo?transport=sse", "sse")


def chromium_streams_a_reply(
    browser: Any, production: Deployment, path: str, transport: str
) -> None:
    prompt = f"Chromium through nginx over {transport}"
    full = demo_reply(prompt)
    context = browser.new_context(base_url=production.url, viewport={"width": 1200, "height": 800})
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(path)
        badge = "Connected · WebSocket" if transport == "websocket" else "Server-sent events"
        page.get_by_text(badge).wait_for()
        field_ = page.locator("#message-input")
        field_.fill(prompt)
        if transport == "sse":
            # The send's own response streams the reply, unbuffered through nginx.
            with page.expect_response(re.compile(r"/streaming-demo/messages$")) as events:
                field_.press("Enter")
            assert events.value.headers["content-type"].startswith("text/event-stream")
        else:
            field_.press("Enter")
        lengths = watch_lengths(page, full)
        assert len(lengths) >= 5, f"the reply did not arrive in steps through nginx: {lengths}"
        article = page.locator("#messages > article[data-role='assistant']").last
        assert article.get_attribute("data-status") == "complete"
        rendered = " ".join(article.locator(".msg-text.markdown").inner_text().split())
        assert " ".join(full.split("\n\n")[-1].replace("**", "").split()) in rendered
        if transport == "websocket":
            assert sockets and sockets[0].startswith(production.url.replace("http", "ws"))
        else:
            assert sockets == []
        assert not [e for e in errors if "favicon" not in e], errors
    finally:
        context.close()


def watch_lengths(page: Any, full: str, timeout: float = 30.0) -> list[int]:
    """The distinct lengths the streaming reply showed, each a prefix of the full reply."""
    lengths: list[int] = []
    page.locator("#messages > article[data-role='assistant'][data-status]").wait_for()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => {
              const all = document.querySelectorAll("#messages > article[data-role='assistant']");
              const reply = all[all.length - 1];
              const streaming = reply && reply.querySelector(".msg-text.streaming");
              const raw = streaming ? streaming.textContent : "";
              return reply && {status: reply.dataset.status, raw: raw};
            }"""
        )
        if state and state["status"] != "streaming":
            return lengths
        raw = (state or {}).get("raw") or ""
        assert full.startswith(raw), f"streamed text is not a prefix of the reply: {raw!r}"
        if raw and (not lengths or len(raw) != lengths[-1]):
            lengths.append(len(raw))
        time.sleep(0.02)
    pytest.fail(f"the reply was still streaming after {timeout} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"worker \d+ \(pid (\d+)\)", log)]


def _reply_row(database_url: str, message_id: int) -> tuple[str, str, str]:
    import psycopg

    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT status, ended_reason, error_text FROM chat_message WHERE id = %s", [message_id]
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_sigterm_drains_the_workers_and_exits_cleanly(production: Deployment):
    browser = Browser()
    message_id, _ = start_reply(browser, production.url, "Finish or be saved at shutdown")
    workers = _children(production.log())
    nginx_pid = int((production.log_path.parent / "run" / "nginx.pid").read_text())

    production.process.send_signal(signal.SIGTERM)
    code = production.process.wait(90)

    log = production.log()
    assert code == 0, log[-3000:]
    assert "run_prod: SIGTERM: draining" in log and "run_prod: stopped" in log
    assert not [pid for pid in [*workers, nginx_pid] if _alive(pid)], "a process outlived it"
    status, ended_reason, error_text = _reply_row(production.database_url, message_id)
    assert status != "streaming", "the live reply was left streaming"
    assert ended_reason in ("completed", "interrupted"), (
        f"{ended_reason}: {error_text}\n{log[-3000:]}"
    )


def test_readyz_names_redis_while_it_is_down_and_recovers(one_worker: Deployment):
    one_worker.redis.stop()
    try:
        for _ in one_worker.worker_ports:
            status, headers, body = get(f"{one_worker.url}/readyz")
            assert status == 503, body
            report = json.loads(body)
            assert report["database"] == "ok" and report["redis"].startswith("error: ")
        status, _, _ = get(f"{one_worker.url}/healthz")
        assert status == 200, "a Redis outage must not make the workers look dead"
    finally:
        one_worker.redis.start()
    deadline = time.monotonic() + 30
    while get(f"{one_worker.url}/readyz")[0] != 200 or get(f"{one_worker.url}/readyz")[0] != 200:
        assert time.monotonic() < deadline, "readiness did not come back with Redis"
        time.sleep(0.5)


def test_a_dead_worker_stops_the_deployment_with_an_error(one_worker: Deployment):
    # Restarting nothing silently: whatever supervises the recipe must see a worker die.
    (worker,) = _children(one_worker.log())
    nginx_pid = int((one_worker.log_path.parent / "run" / "nginx.pid").read_text())
    os.kill(worker, signal.SIGKILL)
    code = one_worker.process.wait(60)
    log = one_worker.log()
    assert code == 1, log[-3000:]
    assert f"worker 1 (pid {worker}) exited with code -9" in log
    deadline = time.monotonic() + 10
    while _alive(nginx_pid):
        assert time.monotonic() < deadline, "nginx outlived the supervisor"
        time.sleep(0.1)
