"""Start the real app (migrate + Daphne) as a subprocess on loopback, for tests that need a
running server: the multi-worker test and the browser tests."""

from __future__ import annotations

import contextlib
import html
import http.client
import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(tool: str) -> str:
    """The path of a program the suite starts; in CI its absence fails instead of skipping."""
    import pytest  # benchmarks use this module without pytest

    path = shutil.which(tool) or next(
        (
            p
            for p in (f"/usr/lib/postgresql/15/bin/{tool}", f"/usr/sbin/{tool}")
            if os.path.exists(p)
        ),
        None,
    )
    if path is None:
        message = f"{tool} is not installed (the suite starts a real one)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# A developer's own settings must not change what a test server is: it is always the embedded
# setup (its own SQLite, in-process layer, demo model) unless the test says otherwise.
_NOT_INHERITED = {
    "DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DJANGO_DEBUG",
    "CHAT_DEFAULT_MODEL", "CHAT_DEMO_ENABLED", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip


def app_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _NOT_INHERITED}
    env.update(
        {
            "CHATSITE_DATA_DIR": str(data_dir),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_RATE_LIMIT": "",
            "CHAT_IP_RATE_LIMIT": "",
            "CHAT_MAX_STREAMING_PER_PERSON": "0",
            "CHAT_MAX_STREAMING_PER_IP": "0",
            # Whatever provider a test configures, the demo stays offered and anonymous use
            # uncapped, unless the test says otherwise (tests/ops/test_self_hosting_defaults.py).
            "CHAT_DEMO_ENABLED": "true",
            "CHAT_ANONYMOUS_DAILY_CAP_USD": "none",
            "CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD": "none",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run `code` with `manage.py shell -c` in the app's environment; its standard output."""
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


def create_superuser(env: dict[str, str], username: str, password: str) -> None:
    """A superuser in the database of an app server with this environment."""
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=REPO,
        env={
            **env,
            "DJANGO_SUPERUSER_USERNAME": username,
            "DJANGO_SUPERUSER_EMAIL": f"{username}@example.com",
            "DJANGO_SUPERUSER_PASSWORD": password,
        },
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )


@contextlib.contextmanager
def daphne(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Serve the app with Daphne on a free loopback port; yields its base URL."""
    with daphne_worker(env, log_path) as worker:
        yield worker.url


@dataclass
class Worker:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def daphne_worker(env: dict[str, str], log_path: Path) -> Iterator[Worker]:
    """Like `daphne`, but yields the process too (tests kill or stop it themselves)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        # One line: tests/serving/test_server.py checks every way of serving runs the launcher.
        launcher = [sys.executable, "-m", "chatsite.serving.server"]
        command = [*launcher, "-b", "127.0.0.1", "-p", str(port)]
        process = subprocess.Popen(
            [*command, "chatsite.asgi:application"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/streaming-demo", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"daphne did not start: {log_path.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)
        yield Worker(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


class Browser:
    """Just enough of a browser: one cookie jar shared across both workers (same host)."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def get(self, url: str) -> str:
        with self.opener.open(url, timeout=10) as response:
            return response.read().decode()

    def post(self, url: str, fields: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(fields).encode(),
            headers={"HX-Request": "true", "X-CSRFToken": self.cookie("csrftoken")},
        )
        with self.opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()

    def events(self, base_url: str, path: str) -> tuple[http.client.HTTPConnection, object]:
        host, port = urllib.parse.urlsplit(base_url).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        connection.request("GET", path, headers={"Cookie": cookies})
        return connection, connection.getresponse()


def read_event(response) -> dict[str, str]:
    """The next SSE event; comment lines (the `: ping` heartbeat) are skipped, as a browser does."""
    event: dict[str, str] = {}
    while True:
        line = response.readline().decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if not line:
            if event:
                return event
            continue
        field, _, value = line.partition(":")
        event[field] = event.get(field, "") + value.lstrip(" ")


@contextlib.contextmanager
def redis_server(
    workdir: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own (so it can be stopped and restarted); yields its URL and
    process."""
    import shutil

    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.kill()
        process.wait(5)


_SEQ_TEXT = re.compile(r'<span data-seq="(\d+)">(.*?)</span>', re.S)


def _deltas(fragment: str) -> list[tuple[int, str]]:
    """The (seq, text) pieces a delta fragment appends, unescaped (as tests/support/transport.py's
    `deltas`, which needs Django set up: benchmarks use this module without it)."""
    return [(int(seq), html.unescape(text)) for seq, text in _SEQ_TEXT.findall(fragment)]


class SSEReader:
    """One SSE reader of a reply: the deltas it got, and the final fragment."""

    def __init__(self, browser: Browser, base_url: str, message_id: int, *, timeout: float) -> None:
        host, port = urllib.parse.urlsplit(base_url).netloc.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
        self.connection.request(
            "GET", f"/streaming-demo/replies/{message_id}/events", headers={"Cookie": cookies}
        )
        self.response = self.connection.getresponse()
        self.pieces: list[tuple[int, str]] = []
        self.final = ""
        self.first_text_at: float | None = None

    def read_to_end(self) -> SSEReader:
        try:
            while not self.final:
                event = read_event(self.response)
                data = event.get("data", "")
                if "<article" in data:
                    self.final = data
                elif found := _deltas(data):
                    if self.first_text_at is None:
                        self.first_text_at = time.monotonic()
                    self.pieces.extend(found)
        finally:
            self.connection.close()
        return self

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.pieces)


def message_row(env: dict[str, str], message_id: int) -> dict[str, object]:
    """The assistant message as the workers' database has it (SQLite file or PostgreSQL)."""
    query = "SELECT status, ended_reason, content, stream_seq FROM chat_message WHERE id = %s"
    if env.get("DATABASE_URL"):
        import psycopg

        with psycopg.connect(env["DATABASE_URL"]) as db:
            row = db.execute(query, (message_id,)).fetchone()
    else:
        import sqlite3

        with sqlite3.connect(Path(env["CHATSITE_DATA_DIR"]) / "db.sqlite3") as db:
            row = db.execute(query.replace("%s", "?"), (message_id,)).fetchone()
    assert row is not None
    return dict(zip(["status", "ended_reason", "content", "stream_seq"], row, strict=True))
