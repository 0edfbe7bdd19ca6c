from __future__ import annotations

import logging
import resource
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db.backends.utils import CursorWrapper

from chat.conversations.reads import Visitor
from chat.costs.staff_config import staff_config_forget
from chat.replies.stream import reset_reply_stream
from tests.support import (
    attachment_files,
    fake_oidc,
    replies,
    servers,
    sse,
    transport,
    websocket,
)
from tests.support import (
    fake_upstream as upstreams,
)
from tests.support.fake_upstream import FakeUpstream, running_fake_upstream
from tests.support.servers import IN_CI, need


def pytest_configure(config) -> None:
    # A CI runner's soft limit on open files may be 1,024: the suite's own many connections (300
    # concurrent Redis reads in one test) and the servers it starts (which inherit it) need more,
    # as a deployment's workers do (docs/deploy.md: LimitNOFILE).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _free_port() -> int:
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
    # The suite's tests set provider keys as they need them: the demo stays offered, and the
    # default anonymous caps (tests/ops/test_self_hosting_defaults.py tests them) are off.
    settings.CHAT_DEMO_ENABLED = True
    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = None
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = None
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
    need("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-redis-"))
    with servers.redis_server(workdir) as (url, _process):
        yield url
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
def openai_upstream(settings, fake_upstream):
    """The OpenAI provider, offering gpt-4.1-mini, pointed at the fake upstream server."""
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.OPENAI_MODELS = ["gpt-4.1-mini"]
    return fake_upstream


# Helpers reach tests as fixtures: tests import nothing from tests/ (tests/test_layout.py checks).
# Each returns a function or class of tests/support/, so a test calls it as it would an import;
# session-scoped, so fixtures of any scope can use them.


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """Whether the suite runs in CI, where a missing tool fails instead of skipping."""
    return IN_CI


@pytest.fixture(scope="session")
def need_tool() -> Callable[[str], str]:
    """`need_tool("nginx")`: the path of a program the suite starts, or a skip (a failure in CI)."""
    return need


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """`free_port()`: a loopback port nothing listens on (yet)."""
    return _free_port


@pytest.fixture(scope="session")
def files():
    """Awkward and hostile files, made on the spot (tests/support/attachment_files.py)."""
    return attachment_files


@pytest.fixture(scope="session")
def create_superuser():
    """`create_superuser(env, username, password)`: a superuser in an app server's database."""
    return servers.create_superuser


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository's root, where the app's subprocesses run."""
    return servers.REPO


@pytest.fixture(scope="session")
def anonymous_session():
    """`await anonymous_session()`: a saved session with a visitor id, as the page creates:
    (cookie header, visitor id)."""
    return transport.anonymous_session


@pytest.fixture(scope="session")
def deltas():
    """`deltas(fragment)`: the (seq, text) pieces a delta fragment appends, unescaped."""
    return transport.deltas


@pytest.fixture(scope="session")
def client_visitor_id():
    """`client_visitor_id(client)`: the visitor id a test client's page visit was given."""
    return transport.client_visitor_id


@pytest.fixture(scope="session")
def http_scope():
    """`http_scope(path, headers, method)`: an ASGI HTTP scope as Daphne builds it."""
    return transport.http_scope


@pytest.fixture(scope="session")
def asgi_get():
    """`await asgi_get(application, path)`: GET in-process, the whole body read; its status."""
    return transport.asgi_get


@pytest.fixture(scope="session")
def run_job():
    """`await run_job(message_id)`: run a reply's job to its end here; the saved message."""
    return replies.run_job


@pytest.fixture(scope="session")
def page_visitor():
    """`page_visitor(client)`: the anonymous visitor a test client becomes by opening the page."""
    return transport.page_visitor


@pytest.fixture(scope="session")
def apage_visitor():
    """`await apage_visitor(async_client)`: `page_visitor` for an async test client."""
    return transport.apage_visitor


@pytest.fixture(scope="session")
def sse_stream() -> type[sse.SSE]:
    """`sse_stream(path, cookie, last_event_id=..., form=...)`: an SSE response of the app read
    in-process as a browser reads it (`await .open()`, `await .event()`, `await .close()`)."""
    return sse.SSE


@pytest.fixture(scope="session")
def chat_socket() -> SimpleNamespace:
    """The chat WebSocket in-process: `connect(cookie)`, `send(socket, **frame)`,
    `read_reply(socket)` (deltas, final fragment), `start_reply(socket, text)` (its id)."""
    return SimpleNamespace(
        ORIGIN=websocket.ORIGIN,
        connect=websocket.connect,
        send=websocket.send,
        read_reply=websocket.read_reply,
        start_reply=websocket.start_reply,
    )


@pytest.fixture(scope="session")
def app_env():
    """`app_env(data_dir, **overrides)`: the environment of an app server of the test's own."""
    return servers.app_env


@pytest.fixture(scope="session")
def manage_shell():
    """`manage_shell(env, code)`: `manage.py shell -c code` in that environment; its output."""
    return servers.manage_shell


@pytest.fixture(scope="session")
def migrate():
    """`migrate(env)`: run the migrations of an app server's database."""
    return servers.migrate


@pytest.fixture(scope="session")
def daphne():
    """`with daphne(env, log_path) as url:` the real app served by Daphne on a free port."""
    return servers.daphne


@pytest.fixture(scope="session")
def daphne_worker():
    """`with daphne_worker(env, log_path) as worker:` like `daphne`, with the process."""
    return servers.daphne_worker


@pytest.fixture(scope="session")
def browser_class() -> type[servers.Browser]:
    """`browser_class()`: just enough of a browser (a cookie jar, htmx posts, SSE reads)."""
    return servers.Browser


@pytest.fixture(scope="session")
def read_event():
    """`read_event(response)`: the next SSE event of an http.client response."""
    return servers.read_event


@pytest.fixture(scope="session")
def sse_reader_class() -> type[servers.SSEReader]:
    """`sse_reader_class(browser, url, message_id, timeout=...)`: one SSE reader of a reply."""
    return servers.SSEReader


@pytest.fixture(scope="session")
def message_row():
    """`message_row(env, message_id)`: the reply as an app server's database has it."""
    return servers.message_row


@pytest.fixture(scope="session")
def redis_server():
    """`with redis_server(workdir, port) as (url, process):` a redis-server of the test's own."""
    return servers.redis_server


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A fake OpenAI / Anthropic server on loopback for this test (tests/support/fake_upstream)."""
    with running_fake_upstream() as fake:
        yield fake


@pytest.fixture
def upstream_stall_limit(monkeypatch):
    """`upstream_stall_limit(seconds)`: the longest the fake upstream holds a stalled stream (10 s
    unless a test says otherwise)."""

    def limit(seconds: float) -> None:
        monkeypatch.setattr(upstreams, "MAX_STALL_SECONDS", seconds)

    return limit


@pytest.fixture(scope="session")
def fake_upstream_server():
    """`with fake_upstream_server() as fake:` a fake upstream for a fixture of a wider scope."""
    return running_fake_upstream


@pytest.fixture(scope="session")
def fake_issuer():
    """`with fake_issuer() as issuer:` a tiny OpenID Connect issuer on loopback."""
    return fake_oidc.running_fake_issuer


def pytest_collection_modifyitems(config, items):
    # Browser tests last: sync Playwright drives its own event loop on the main thread, which
    # must not overlap the pytest-asyncio tests.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


class _LogWatch(logging.Handler):
    """Every log record with a traceback or at ERROR and above, while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.bad.append(record)


@pytest.fixture
def log_watch() -> Iterator[_LogWatch]:
    handler = _LogWatch()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def statements(monkeypatch) -> list[tuple[str, str]]:
    """Every SQL statement any thread runs from now on, as (thread name, SQL)."""
    seen: list[tuple[str, str]] = []
    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany

    def recorded_execute(self, sql, params=None):
        seen.append((threading.current_thread().name, sql))
        return execute(self, sql, params)

    def recorded_executemany(self, sql, param_list):
        seen.append((threading.current_thread().name, sql))
        return executemany(self, sql, param_list)

    monkeypatch.setattr(CursorWrapper, "execute", recorded_execute)
    monkeypatch.setattr(CursorWrapper, "executemany", recorded_executemany)
    return seen


@pytest.fixture
def room_renders(monkeypatch) -> list[str]:
    """The templates chat/web/rooms.py renders from now on, by name."""
    from chat.web import rooms

    renders: list[str] = []
    render = rooms.render_to_string

    def counted(template_name, *args, **kwargs):
        renders.append(template_name)
        return render(template_name, *args, **kwargs)

    monkeypatch.setattr(rooms, "render_to_string", counted)
    return renders
