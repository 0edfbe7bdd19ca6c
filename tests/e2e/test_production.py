"""The production recipe, end to end: `scripts/run_prod.py` (what `make run-prod` runs) with two
Daphne workers behind the real nginx, against a throwaway PostgreSQL and a redis-server that the
tests start, stop and restart. Everything goes through the proxy, as a visitor's browser does.

One deployment serves the module (starting it migrates, collects static files and boots the
workers and nginx); the last tests end it, with SIGTERM and by killing a worker. These tests run
in the e2e group, once per `make test`: the recipe always uses PostgreSQL, so the suite's second,
PostgreSQL pass has nothing to add.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import brotli
import pytest

from chat.providers.demo import demo_reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


# The deployment, its services and its readers are fixtures of tests/e2e/conftest.py
# (from tests/support/deployment.py).


# --- Tests --------------------------------------------------------------------------------------


def test_production_refuses_to_start_without_database_and_redis(tmp_path, app_env, free_port, repo):
    env = app_env(tmp_path)
    result = subprocess.run(
        [sys.executable, str(repo / "scripts" / "run_prod.py"), "--port", str(free_port())],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "DATABASE_URL is not set" in result.stderr and "REDIS_URL is not set" in result.stderr
    assert not (tmp_path / "run").exists(), "it started something before refusing"


def test_health_and_readiness_through_the_proxy(production, production_kit):
    status, headers, body = production_kit.get(f"{production.url}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["Server"] == "nginx" and "Set-Cookie" not in headers
    for _ in production.worker_ports:  # round robin: each worker answers once
        status, _, body = production_kit.get(f"{production.url}/readyz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "database": "ok", "redis": "ok"}
    assert len(production.worker_ports) == 2


def test_static_files_are_hashed_long_cached_and_compressed_through_the_proxy(
    production, production_kit
):
    _, _, page = production_kit.get(f"{production.url}/streaming-demo")
    scripts = re.findall(r'src="(/static/chat/chat\.[0-9a-f]{12}\.js)"', page.decode())
    assert scripts, "the page does not name a hashed chat.js"
    url = f"{production.url}{scripts[0]}"

    status, plain_headers, plain = production_kit.get(url, {"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in plain_headers
    assert plain_headers["Cache-Control"] == "max-age=31536000, public, immutable"
    assert plain_headers["X-Content-Type-Options"] == "nosniff"
    assert plain_headers["Content-Type"].startswith("text/javascript")

    _, br_headers, br_body = production_kit.get(url, {"Accept-Encoding": "gzip, br"})
    assert br_headers["Content-Encoding"] == "br" and "Accept-Encoding" in br_headers["Vary"]
    assert brotli.decompress(br_body) == plain and len(br_body) < len(plain)

    _, gz_headers, gz_body = production_kit.get(url, {"Accept-Encoding": "gzip"})
    assert gz_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gz_body) == plain
    assert gz_headers["Cache-Control"] == "max-age=31536000, public, immutable"


def test_a_websocket_reply_streams_token_by_token_through_the_proxy(
    production, browser_class, deltas, production_kit
):
    from websockets.sync.client import connect

    prompt = "Stream through the proxy over a WebSocket"
    full = demo_reply(prompt)
    browser = browser_class()
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
        reading = production_kit.Reading()
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
    production_kit.assert_streamed_in_steps(reading, full)


def test_sse_through_the_proxy_streams_unbuffered_from_either_worker(
    production, browser_class, production_kit
):
    prompt = "Stream through the proxy over server-sent events"
    full = demo_reply(prompt)
    browser = browser_class()
    message_id, _ = production_kit.start_reply(browser, production.url, prompt)
    readings = [production_kit.Reading(), production_kit.Reading()]
    # Two readers at once: round robin sends them to different workers.
    threads = [
        threading.Thread(
            target=production_kit.read_sse, args=(browser, production.url, message_id, reading)
        )
        for reading in readings
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for reading in readings:
        production_kit.assert_streamed_in_steps(reading, full)
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
    production, production_kit
):
    silences = production.silences
    assert silences is not None
    for thread in silences.threads:
        thread.join(120)
    assert not silences.errors, silences.errors
    for name in ("sse-1", "sse-2", "ws"):
        reading = silences.results[name]
        assert reading.text == production_kit.SILENT_TEXT, name
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


def test_metrics_are_protected_and_count_replies_across_workers(
    production, browser_class, production_kit
):
    status, _, _ = production_kit.get(f"{production.url}/metrics")
    assert status == 401
    auth = {"Authorization": f"Bearer {production_kit.METRICS_TOKEN}"}
    _, _, before = production_kit.get(f"{production.url}/metrics", auth)
    completed_before = production_kit.metric(
        before.decode(), "chat_replies_ended_total", '{reason="completed"}'
    )

    browser = browser_class()
    message_id, _ = production_kit.start_reply(browser, production.url, "Count this reply")
    production_kit.read_sse(
        browser, production.url, message_id, reading := production_kit.Reading()
    )
    assert 'data-status="complete"' in reading.final

    # Whichever worker answers, it sums every worker's counts (prometheus multi-process files).
    for _ in production.worker_ports:
        status, headers, body = production_kit.get(f"{production.url}/metrics", auth)
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert (
            production_kit.metric(text, "chat_replies_ended_total", '{reason="completed"}')
            == completed_before + 1
        )
        assert (
            production_kit.metric(
                text, "chat_time_to_first_token_seconds_count", '{provider="demo"}'
            )
            >= 1
        )
        assert production_kit.metric(text, "chat_output_tokens_total", '{provider="demo"}') > 0
        assert production_kit.metric(text, "chat_live_replies") == 0
        assert production_kit.metric(text, "chat_readers", '{transport="sse"}') == 0


def test_chromium_through_the_proxy_streams_over_websocket_and_sse(production, browser: Any):
    chromium_streams_a_reply(browser, production, "/streaming-demo", "websocket")
    chromium_streams_a_reply(browser, production, "/streaming-demo?transport=sse", "sse")


def chromium_streams_a_reply(browser: Any, production, path: str, transport: str) -> None:
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


def test_sigterm_drains_the_workers_and_exits_cleanly(production, browser_class, production_kit):
    browser = browser_class()
    message_id, _ = production_kit.start_reply(
        browser, production.url, "Finish or be saved at shutdown"
    )
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


def test_readyz_names_redis_while_it_is_down_and_recovers(one_worker, production_kit):
    one_worker.redis.stop()
    try:
        for _ in one_worker.worker_ports:
            status, headers, body = production_kit.get(f"{one_worker.url}/readyz")
            assert status == 503, body
            report = json.loads(body)
            assert report["database"] == "ok" and report["redis"].startswith("error: ")
        status, _, _ = production_kit.get(f"{one_worker.url}/healthz")
        assert status == 200, "a Redis outage must not make the workers look dead"
    finally:
        one_worker.redis.start()
    deadline = time.monotonic() + 30
    while (
        production_kit.get(f"{one_worker.url}/readyz")[0] != 200
        or production_kit.get(f"{one_worker.url}/readyz")[0] != 200
    ):
        assert time.monotonic() < deadline, "readiness did not come back with Redis"
        time.sleep(0.5)


def test_a_dead_worker_stops_the_deployment_with_an_error(one_worker):
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
