"""The Content-Security-Policy in Chromium: every page the app serves works under it with no
violation, and an XSS corpus sent as user text and as model output never runs.

One server for the module: the OpenAI provider pointed at the fake upstream (so a test decides
what "the model" writes), the demo model and a superuser for the admin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_analytics_page import CHARTS, drawn
from tests.fake_upstream import FakeUpstream, running_fake_upstream
from tests.servers import REPO, app_env, daphne, migrate

from .conftest import PageErrors

pytestmark = pytest.mark.e2e

PASSWORD = "csp-e2e-password"
ASSISTANT = "#messages > article[data-role='assistant']"

# Markdown that exercises every part of the renderers: a heading, emphasis, a link, an aligned
# table (markdown-it aligns cells), a highlighted code block and a list.
RICH_REPLY = (
    "## A heading\n\nSome **bold** and a [link](https://example.com/).\n\n"
    "| Left | Centre | Right |\n| :--- | :---: | ---: |\n| a | b | 1 |\n| c | d | 22 |\n\n"
    '```python\ndef hello():\n    return "hi"\n```\n\n1. one\n2. two\n'
)

# Registered before any page script runs, on every page of a context: CSP violations are sent
# to the test as they happen (so none is lost to a navigation).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolation({
    directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
    line: event.lineNumber, sample: event.sample, page: location.href,
  });
});
"""


@dataclass
class Visit:
    page: Any
    violations: list[dict[str, Any]] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, FakeUpstream]]:
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-e2e-csp-"))
    with running_fake_upstream() as upstream:
        env = app_env(
            data_dir,
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=upstream.openai_base_url,
            OPENAI_MODELS="gpt-4.1-mini",
            CHAT_DEFAULT_MODEL="openai:gpt-4.1-mini",
            CHAT_PROVIDER_MAX_RETRIES="0",
            CHAT_DEMO_TOKENS_PER_SECOND="60",
            DJANGO_SUPERUSER_USERNAME="staff",
            DJANGO_SUPERUSER_EMAIL="staff@example.com",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
        try:
            migrate(env)
            subprocess.run(
                [sys.executable, "manage.py", "createsuperuser", "--noinput"],
                cwd=REPO,
                env=env,
                check=True,
                timeout=120,
                stdout=subprocess.DEVNULL,
            )
            with daphne(env, data_dir / "server.log") as url:
                yield url, upstream
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def visit(
    browser: Any, site: tuple[str, FakeUpstream], page_errors: PageErrors
) -> Iterator[Callable[[], Visit]]:
    """A fresh browser context (a new visitor) whose CSP violations and dialogs are recorded."""
    contexts: list[Any] = []

    def open_visit() -> Visit:
        context = browser.new_context(base_url=site[0], viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        visit = Visit(page=None)
        context.expose_binding("__cspViolation", lambda _source, v: visit.violations.append(v))
        context.add_init_script(CSP_LISTENER)
        visit.page = context.new_page()
        visit.page.on("dialog", lambda d: (visit.dialogs.append(d.message), d.dismiss()))
        page_errors.watch(visit.page)
        return visit

    yield open_visit
    for context in contexts:
        context.close()
    if page_errors.errors:
        pytest.fail("The page logged errors:\n" + "\n".join(page_errors.errors), pytrace=False)


def assert_strict_policy(response: Any) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("script-src") == ["'self'"], policy
    assert directives.get("default-src") == ["'self'"], policy
    assert directives.get("object-src") == ["'none'"], policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy


def wait_for_status(page: Any, status: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """(status) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length > 0 && all[all.length - 1].dataset.status === status;
        }""",
        arg=status,
        timeout=timeout,
    )


def sign_in_as_staff(page: Any) -> None:
    assert_strict_policy(page.goto("/admin/login/"))
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


# --- Every page works under the policy --------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_reply_streams_and_renders_with_no_csp_violation(visit, site, transport):
    _, upstream = site
    upstream.script(text=RICH_REPLY, chunks=12, delay=0.15)
    v = visit()
    page = v.page
    query = "?transport=sse" if transport == "sse" else ""
    assert_strict_policy(page.goto(f"/streaming-demo{query}"))
    label = "Server-sent events" if transport == "sse" else "Connected · WebSocket"
    page.get_by_text(label).wait_for()

    page.fill("#message-input", "Show me some Markdown")
    page.press("#message-input", "Enter")
    # While it streams, the live Markdown preview shows the table (DOMPurify'd markdown-it).
    page.wait_for_selector(f"{ASSISTANT} .msg-text.live table", timeout=20_000)
    wait_for_status(page, "complete")
    reply = page.locator(ASSISTANT).last
    assert reply.locator(".markdown table td").count() == 6
    assert reply.locator(".markdown pre code span").count() > 0  # highlighted by Pygments
    # Aligned cells keep their alignment without a style attribute (style-src has no inline).
    right = reply.locator(".markdown td").nth(2)
    assert right.evaluate("(td) => getComputedStyle(td).textAlign") == "right"
    assert v.violations == []


def test_the_sign_in_and_error_pages_have_no_csp_violation(visit, page_errors):
    page_errors.allow(r"status of 404 \(Not Found\)")
    v = visit()
    page = v.page
    assert_strict_policy(page.goto("/accounts/login/"))
    assert page.locator("form input[name=password]").count() == 1
    not_found = page.goto("/no-such-page")
    assert not_found is not None and not_found.status == 404
    assert_strict_policy(not_found)
    assert page.locator("main.auth h1").inner_text() == "Not found"  # styled, like the app
    assert v.violations == []


def test_the_admin_pages_work_with_no_csp_violation(visit, site):
    _, upstream = site
    upstream.script(text=RICH_REPLY, chunks=3)
    v = visit()
    page = v.page
    page.goto("/streaming-demo")  # a conversation for the admin to list and show
    page.get_by_text("Connected · WebSocket").wait_for()
    page.fill("#message-input", "Something for the admin to review")
    page.press("#message-input", "Enter")
    wait_for_status(page, "complete")
    sign_in_as_staff(page)

    assert_strict_policy(page.goto("/admin/chat/conversation/"))
    assert page.locator("#result_list tbody tr").count() > 0
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_selector(".review-transcript .review-msg .markdown table")

    assert_strict_policy(page.goto("/admin/chat/usagereport/"))
    page.wait_for_selector("#chart-cost")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-cost')")
    for canvas_id in CHARTS:
        chart = drawn(page, canvas_id)
        assert chart["chart"] and chart["painted"] > 100, (canvas_id, chart)
    assert v.violations == []
