from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import AnonymousUser

from chat.conversations.reads import Visitor
from chat.costs.staff_config import staff_config_forget
from chat.replies.stream import reset_reply_stream
from tests.fake_upstream import fake_upstream  # noqa: F401 - a fixture

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(tool: str) -> str:
    """The path of a program the suite starts; in CI its absence fails instead of skipping."""
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def chat_settings(settings):
    """Fast, quiet defaults for tests; a test that needs pacing sets it itself."""
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 0
    settings.CHAT_RATE_LIMIT = ""
    settings.CHAT_IP_RATE_LIMIT = ""
    settings.CHAT_MAX_STREAMING_PER_PERSON = 0
    settings.CHAT_MAX_STREAMING_PER_IP = 0
    settings.CHAT_COALESCE_MS = 5
    settings.CHAT_FLUSH_SECONDS = 0.05
    settings.CHAT_PROVIDER_MAX_RETRIES = 0
    settings.REDIS_URL = ""
    reset_reply_stream()
    # Each test's database starts empty (or rolls back): no prices or caps of another test's.
    staff_config_forget()
    yield settings
    reset_reply_stream()
    staff_config_forget()


@pytest.fixture
def visitor() -> Visitor:
    return Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)


@pytest.fixture
def other_visitor() -> Visitor:
    return Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback, started for this test session."""
    server = need("redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="chatsite-redis-")
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
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
            process.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(5)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def use_redis(settings, redis_url):
    """Run the test with the Redis reply stream, as a multi-worker deployment does."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    settings.REDIS_URL = redis_url
    reset_reply_stream()
    yield redis_url
    reset_reply_stream()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    yield
    # Generation jobs ran ORM calls in asgiref's worker thread, whose connection outlives the
    # tests; on PostgreSQL it would block dropping the test database.
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def openai_upstream(settings, fake_upstream):  # noqa: F811 - the fixture
    """The OpenAI provider, offering gpt-4.1-mini, pointed at the fake upstream server."""
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.OPENAI_MODELS = ["gpt-4.1-mini"]
    return fake_upstream


def pytest_collection_modifyitems(config, items):
    # Browser tests last: sync Playwright drives its own event loop on the main thread, which
    # must not overlap the pytest-asyncio tests.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
