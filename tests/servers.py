"""Start the real app (migrate + Daphne) as a subprocess on loopback, for tests that need a
running server: the multi-worker test and the browser tests."""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
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
        yield url
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
    event: dict[str, str] = {}
    while True:
        line = response.readline().decode().rstrip("\n")
        if not line:
            if event:
                return event
            continue
        field, _, value = line.partition(":")
        event[field] = event.get(field, "") + value.lstrip(" ")
