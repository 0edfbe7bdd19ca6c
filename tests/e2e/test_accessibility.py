"""axe-core (vendored under tests/, never served) finds nothing wrong with the chat pages — empty,
with a finished reply holding code, a table, math and a task list, and while a reply streams —
nor with the sign-in page, in the light and the dark scheme; and a screen reader hears each reply
once, when it ends, instead of every frame of it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"
SCHEMES = ["light", "dark"]


@pytest.fixture
def assert_no_violations(run_axe, describe_violations):
    def assert_no_violations(page: Any) -> None:
        violations = run_axe(page)
        assert not violations, describe_violations(violations)

    return assert_no_violations


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_empty_chat_sign_in_and_error_pages_have_no_axe_violations(
    new_page: Any, page_errors, scheme: str, assert_no_violations
) -> None:
    page_errors.allow(r"status of 404")  # the error pages, on purpose
    page = new_page(color_scheme=scheme)
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    assert_no_violations(page)

    page.goto("/accounts/login/")
    assert_no_violations(page)
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    page.locator(".errorlist").wait_for()
    assert_no_violations(page)  # with the error shown

    page.goto("/no/such/page")
    assert_no_violations(page)
    page.goto("/streaming-demo/c/00000000-0000-4000-8000-000000000000")  # nobody's chat
    page.get_by_text("This chat is not available here").wait_for()
    assert_no_violations(page)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_chat_streaming_and_finished_has_no_axe_violations(
    new_page: Any,
    provider_server: tuple[str, Any],
    scheme: str,
    markdown_corpus,
    assert_no_violations,
) -> None:
    url, upstream = provider_server
    upstream.script(text=markdown_corpus, chunks=50, stall_after=30)
    page = new_page(base_url=url, color_scheme=scheme)
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    page.fill("#message-input", "Everything, please")
    page.press("#message-input", "Enter")

    upstream.wait_for_stall(timeout=20)
    page.wait_for_selector(f"{ASSISTANT}[data-status='streaming'] .msg-text.live table")
    assert_no_violations(page)  # streaming, with the live preview

    upstream.release()
    page.wait_for_selector(f"{ASSISTANT}[data-status='complete'] .katex")
    page.wait_for_selector(f"{ASSISTANT} .copy-code")
    assert_no_violations(page)  # finished: code, table, math, task list, buttons


def test_a_reply_is_announced_once_when_it_ends(page: Any) -> None:
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    # Every change to the live region, as a screen reader would be told of it.
    page.evaluate(
        """() => {
          window.__announced = [];
          const region = document.getElementById("reply-announcer");
          new MutationObserver(() => window.__announced.push(region.textContent))
            .observe(region, { childList: true, characterData: true, subtree: true });
        }"""
    )
    messages = page.locator("#messages")
    assert messages.get_attribute("aria-live") is None  # the list itself is not live
    page.fill("#message-input", "Tell me something")
    page.press("#message-input", "Enter")
    page.wait_for_selector(f"{ASSISTANT}[data-status='streaming']")
    page.wait_for_selector(f"{ASSISTANT}[data-status='complete']", timeout=20_000)
    page.wait_for_function("() => window.__announced.length > 0")

    announced = page.evaluate("window.__announced")
    assert len(announced) == 1, announced
    reply = page.locator(f"{ASSISTANT} .markdown").inner_text()
    assert announced[0].startswith("Assistant replied:")
    assert " ".join(reply.split()[:8]) in " ".join(announced[0].split())

    # Roles and buttons carry their own names.
    assert (
        page.locator("#messages > article[data-role='user']").get_attribute("aria-label") == "You"
    )
    assert page.locator(ASSISTANT).get_attribute("aria-label") == "Assistant"
    names = [
        b.get_attribute("aria-label") or b.inner_text()
        for b in page.locator(f"{ASSISTANT} button").all()
    ]
    assert "Copy reply" in names and "Copy code block 1" in names
    assert len(names) == len(set(names)), names
