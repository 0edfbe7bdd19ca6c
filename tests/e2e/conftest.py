"""End-to-end fixtures: the real app under Daphne in a subprocess, and headless Chromium.

The server runs exactly as `make run` runs it (migrate, then daphne), with its own temporary
data directory (SQLite database, secret key), the offline demo model slowed down enough that a
test can watch a reply grow and stop it halfway, and no rate limit.

The browser side uses Playwright's *sync* API from plain (non-async) tests: pytest-asyncio runs
in auto mode here, and the sync API refuses to run inside an asyncio loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import deployment, pages, rooms
from tests.support.fake_upstream import FakeUpstream, running_fake_upstream
from tests.support.servers import app_env, daphne, migrate

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = REPO_ROOT / "test-artifacts"

# Slow enough to see a reply grow in many steps and to stop it halfway, quick enough that a whole
# demo reply (~120 tokens) takes about four seconds.
TOKENS_PER_SECOND = 30

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_server_log: dict[str, Path] = {}


def _chromium_path() -> str | None:
    candidates = [os.environ.get("CHROMIUM_PATH", ""), "/usr/bin/chromium"]
    candidates += [shutil.which(name) or "" for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _unavailable(reason: str) -> None:
    """A missing browser fails the run on CI (it must not silently test nothing), skips locally."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


# --- The server -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server_url() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-e2e-"))
    log_path = data_dir / "server.log"
    _server_log["path"] = log_path
    env = app_env(data_dir, CHAT_DEMO_TOKENS_PER_SECOND=str(TOKENS_PER_SECOND))
    try:
        migrate(env)
        with daphne(env, log_path) as url:
            yield url
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"the app did not start: {exc}\n{_tail(log_path)}", pytrace=False)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _serving_with_upstream(
    prefix: str, *, prepare: Callable[[dict[str, str]], None] | None = None, **overrides: str
) -> Iterator[tuple[str, FakeUpstream]]:
    """The app with the OpenAI provider pointed at a fake upstream the test scripts: (its URL,
    the upstream). `prepare` runs against the migrated database before the server starts."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    with running_fake_upstream() as upstream:
        settings = {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": upstream.openai_base_url,
            "OPENAI_MODELS": "gpt-4.1-mini",
            "CHAT_DEFAULT_MODEL": "openai:gpt-4.1-mini",
            "CHAT_PROVIDER_MAX_RETRIES": "0",
            **overrides,
        }
        env = app_env(data_dir, **settings)
        try:
            migrate(env)
            if prepare is not None:
                prepare(env)
            with daphne(env, data_dir / "server.log") as url:
                yield url, upstream
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[str, FakeUpstream]]:
    """The app with the OpenAI provider pointed at a fake upstream the test scripts."""
    with _serving_with_upstream("chatsite-e2e-provider-") as served:
        yield served


# --- The production recipe (tests/e2e/test_production.py) -------------------------------------


@pytest.fixture(scope="module")
def services() -> Iterator[deployment.Services]:
    """PostgreSQL, a Redis and the fake upstream, for the module's deployments."""
    with deployment.running_services() as running:
        yield running


@pytest.fixture(scope="module")
def production(services) -> Iterator[deployment.Deployment]:
    """Two workers behind nginx; ended by the SIGTERM test. A reply with long silences starts
    with it and is read in the background while the other tests run."""
    with deployment.deployed(services, workers=2) as served:
        served.silences = deployment.silences_start(served, services.upstream)
        yield served
        for thread in served.silences.threads:
            thread.join(90)


@pytest.fixture(scope="module")
def one_worker(services) -> Iterator[deployment.Deployment]:
    """A second deployment for the tests that break things (Redis, a worker); it finds the
    database migrated and the static files collected."""
    with deployment.deployed(services, workers=1) as served:
        yield served


@pytest.fixture(scope="session")
def production_kit() -> SimpleNamespace:
    """What the production tests read the deployment with (tests/support/deployment.py)."""
    return SimpleNamespace(
        METRICS_TOKEN=deployment.METRICS_TOKEN,
        SILENT_TEXT=deployment.SILENT_TEXT,
        Reading=deployment.Reading,
        get=deployment.get,
        metric=deployment.metric,
        start_reply=deployment.start_reply,
        read_sse=deployment.read_sse,
        assert_streamed_in_steps=deployment.assert_streamed_in_steps,
        run_prod=deployment.run_prod,
    )


@pytest.fixture(scope="session")
def serving_with_upstream():
    """`with serving_with_upstream(prefix, prepare=..., **overrides) as (url, upstream):` the
    app with the OpenAI provider pointed at a fake upstream the test scripts."""
    return _serving_with_upstream


@pytest.fixture(scope="session")
def serve_room(redis_url):
    """`with serve_room(data_dir, **settings) as served:` a shared conversation on two Daphne
    workers on the suite's Redis (tests/support/rooms.py says what `served` holds)."""
    return functools.partial(rooms.room_on_two_workers, redis_url=redis_url)


@pytest.fixture(scope="module")
def room_on_two_workers(tmp_path_factory, serve_room) -> Iterator[dict[str, Any]]:
    """Ana shares "Trip plans" with Bo, served by two Daphne workers on one Redis:
    {"owner": (her worker's URL, her session key), "member": (his), "conversation": its id}."""
    with serve_room(tmp_path_factory.mktemp("room"), CHAT_DEMO_TOKENS_PER_SECOND="60") as served:
        yield served


# --- The browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    executable = _chromium_path()
    if executable is None:
        _unavailable("Chromium not found (install it, or set CHROMIUM_PATH)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class PageErrors:
    """Console errors and uncaught exceptions of every page a test opened."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        """Expect a console error matching `pattern` (e.g. the log line of a deliberate 400)."""
        self.allowed.append(re.compile(pattern))

    def watch(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        location = (message.location or {}).get("url", "")
        if "favicon.ico" in location or "favicon.ico" in message.text:
            return
        error = f"console error: {message.text} ({location})"
        if not any(pattern.search(error) for pattern in self.allowed):
            self.errors.append(error)


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def new_page(
    browser: Any, live_server_url: str, page_errors: PageErrors, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Open a page in a fresh browser context (a new anonymous visitor: no cookies), e.g.
    `new_page(java_script_enabled=False)` or `new_page(viewport={...})`."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def open_page(**context_options: Any) -> Any:
        options: dict[str, Any] = {
            "base_url": live_server_url,
            "viewport": {"width": 1200, "height": 800},
        }
        options.update(context_options)
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page_errors.watch(page)
        pages.append(page)
        return page

    yield open_page

    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for index, page in enumerate(pages):
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}.png"))
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()
    if page_errors.errors and not (report is not None and report.failed):
        pytest.fail("The page logged errors:\n" + "\n".join(page_errors.errors), pytrace=False)


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots of failed (and of some passing) browser tests go."""
    return ARTIFACTS


# What tests check pages with (tests/support/pages.py).


@pytest.fixture(scope="session")
def run_axe():
    """`run_axe(page)`: axe-core's violations on the page as it is now."""
    return pages.run_axe


@pytest.fixture(scope="session")
def describe_violations():
    """`describe_violations(violations)`: axe-core's violations, readable in a failure."""
    return pages.describe


@pytest.fixture(scope="session")
def markdown_corpus() -> str:
    """tests/e2e/data/markdown_corpus.md: every Markdown feature the page renders."""
    return pages.CORPUS


@pytest.fixture(scope="session")
def png_mean_luminance():
    """`png_mean_luminance(png)`: the mean luminance of a screenshot, 0 (black) to 1."""
    return pages.png_mean_luminance


@pytest.fixture(scope="session")
def analytics_charts() -> list[str]:
    """The ids of the analytics page's chart canvases."""
    return pages.CHARTS


@pytest.fixture(scope="session")
def drawn():
    """`drawn(page, canvas_id)`: what Chart.js drew on a canvas (points, painted pixels)."""
    return pages.drawn


# --- Reporting --------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    if not report.failed:
        return
    errors = getattr(item, "funcargs", {}).get("page_errors")
    if report.when == "call" and errors is not None and errors.errors:
        report.sections.append(("page errors", "\n".join(errors.errors)))
    if "path" in _server_log:
        report.sections.append(("server log (last lines)", _tail(_server_log["path"], 60)))
