"""A reply's compact footer (its figures behind the (i) button), the tab's title after a rename,
and "↓ Latest" while scrolled up during a stream — in headless Chromium, against the real server
with the OpenAI provider pointed at the fake upstream."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LONG = "\n\n".join(f"Paragraph {n}: a line of text that fills the screen." for n in range(40))


def open_chat(page: Any) -> None:
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()


def wait_idle(page: Any, replies: int) -> None:
    page.wait_for_function(
        """(count) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length === count && ![...all].some((a) => a.dataset.status === "streaming");
        }""",
        arg=replies,
        timeout=15_000,
    )


def send(page: Any, text: str) -> None:
    field = page.locator("#message-input")
    field.fill(text)
    field.press("Enter")


def send_and_wait(page: Any, upstream: Any, prompt: str, replies: int, **reply: Any) -> None:
    upstream.script(**reply)
    send(page, prompt)
    wait_idle(page, replies)


def boxes(article: Any, selectors: list[str]) -> dict[str, dict[str, float]]:
    return article.evaluate(
        """(article, selectors) => Object.fromEntries(selectors.map((selector) => {
          const box = article.querySelector(selector).getBoundingClientRect();
          return [selector, { top: box.top, bottom: box.bottom, left: box.left,
                              right: box.right, width: box.width, height: box.height }];
        }))""",
        selectors,
    )


def assert_one_line(article: Any, selectors: list[str], width: int) -> None:
    found = boxes(article, selectors)
    middles = {selector: (box["top"] + box["bottom"]) / 2 for selector, box in found.items()}
    assert max(middles.values()) - min(middles.values()) < 6, found
    assert all(box["right"] <= width and box["width"] > 0 for box in found.values()), found
    toggle = found[".figures-toggle"]
    assert toggle["width"] >= 24 and toggle["height"] >= 24, toggle


@pytest.fixture
def chat(new_page: Any, provider_server: tuple[str, Any]):
    url, upstream = provider_server

    def chat(**options: Any) -> Any:
        page = new_page(base_url=url, **options)
        open_chat(page)
        return page

    yield chat, upstream
    upstream.release()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390", "1280"])
def test_the_reply_footer_keeps_its_controls_on_one_line(chat, viewport) -> None:
    open_page, upstream = chat
    page = open_page(viewport=viewport)
    send_and_wait(page, upstream, "Hello", 1, text="First take.")
    page.locator(ASSISTANT).last.get_by_role("button", name="Regenerate this reply").click()
    page.locator(f"{ASSISTANT} .version-count", has_text="2/2").wait_for()
    wait_idle(page, 1)

    reply = page.locator(ASSISTANT).last
    controls = [".versions", ".regenerate", ".feedback-up", ".feedback-down", ".figures-toggle"]
    assert_one_line(reply, controls, viewport["width"])
    assert not reply.locator(".msg-figures").is_visible()  # the figures wait behind (i)
    reply.locator(".feedback-down").click()  # rated: the comment box takes its own row
    reply.locator(".feedback-comment").wait_for()
    assert_one_line(page.locator(ASSISTANT).last, controls, viewport["width"])

    # An error reply: Retry, Delete and (i) on one line, and nothing to rate.
    send_and_wait(page, upstream, "Refused", 2, status=401)
    failed = page.locator(ASSISTANT).last
    assert failed.get_attribute("data-status") == "error"
    assert failed.locator(".feedback-up, .feedback-down").count() == 0
    failed_controls = [".badge", ".retry", ".delete-turn", ".figures-toggle"]
    assert_one_line(failed, failed_controls, viewport["width"])

    # While streaming: (i) is there (the model so far) and the footer is one line.
    upstream.script(text=LONG, chunks=20, stall_after=2)
    send(page, "A long one")
    streaming = page.locator(f"{ASSISTANT}[data-status='streaming']")
    streaming.locator(".figures-toggle").wait_for()
    footer = boxes(streaming, [".msg-meta", ".figures-toggle"])
    assert footer[".msg-meta"]["height"] < 40, footer
    streaming.locator(".figures-toggle").click()
    assert streaming.locator(".msg-figures").inner_text().strip() == "gpt-4.1-mini"
    upstream.release()
    wait_idle(page, 3)


def test_the_figures_open_from_i_by_keyboard_hover_and_tap_and_close(chat) -> None:
    open_page, upstream = chat
    page = open_page(viewport=PHONE)
    send_and_wait(page, upstream, "Hello", 1, text="Hi!", input_tokens=1200, output_tokens=34)
    reply = page.locator(ASSISTANT).last
    toggle = reply.get_by_role("button", name="Reply figures")
    figures = reply.locator(".msg-figures")
    assert toggle.get_attribute("aria-expanded") == "false"

    toggle.focus()
    page.keyboard.press("Enter")
    assert figures.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    text = figures.inner_text()
    for part in ("gpt-4.1-mini", "to first token", "tok/s", "1,200 in · 34 out", "$"):
        assert part in text, text
    # Next to (i), and whole on a 390 px screen.
    box, near = figures.bounding_box(), toggle.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    above = abs(box["y"] + box["height"] - near["y"]) < 20
    below = abs(box["y"] - (near["y"] + near["height"])) < 20
    assert above or below, (box, near)

    page.keyboard.press("Escape")
    assert not figures.is_visible() and toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.classList.contains('figures-toggle')")

    page.keyboard.press("Space")
    assert figures.is_visible()
    page.locator("#conversation-title").click()  # a click elsewhere closes it
    assert not figures.is_visible()

    toggle.hover()
    assert figures.is_visible()
    page.mouse.move(5, 400)
    page.wait_for_function(
        "() => !document.querySelector('#messages .msg-figures.open')", timeout=5_000
    )

    toggle.click()  # a tap pins it open…
    page.mouse.move(5, 400)
    assert figures.is_visible()
    toggle.click()  # …until the next one
    assert not figures.is_visible()


def test_escape_on_open_figures_closes_them_and_does_not_stop_the_reply(chat) -> None:
    open_page, upstream = chat
    page = open_page()
    upstream.script(text=LONG, chunks=20, stall_after=2)
    send(page, "Go on")
    streaming = page.locator(f"{ASSISTANT}[data-status='streaming']")
    streaming.get_by_role("button", name="Reply figures").click()
    page.keyboard.press("Escape")
    assert not streaming.locator(".msg-figures").is_visible()
    assert streaming.get_attribute("data-status") == "streaming"
    upstream.release()
    wait_idle(page, 1)


def test_without_javascript_the_figures_show_inline(chat, new_page, provider_server) -> None:
    open_page, upstream = chat
    page = open_page()
    send_and_wait(page, upstream, "Hello", 1, text="Hi!")
    plain = new_page(
        base_url=provider_server[0],
        java_script_enabled=False,
        storage_state=page.context.storage_state(),
    )
    plain.goto(page.url)
    reply = plain.locator(ASSISTANT).last
    assert not reply.locator(".figures-toggle").is_visible()
    assert reply.locator(".msg-figures").is_visible()
    assert "tok/s" in reply.locator(".msg-figures").inner_text()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_footer_and_open_figures_pass_axe(chat, scheme, run_axe, describe_violations) -> None:
    open_page, upstream = chat
    page = open_page(color_scheme=scheme, viewport=PHONE)
    send_and_wait(page, upstream, "Hello", 1, text="Hi!")
    send_and_wait(page, upstream, "Refused", 2, status=401)
    page.locator(ASSISTANT).first.get_by_role("button", name="Reply figures").click()
    violations = run_axe(page)
    assert not violations, describe_violations(violations)


def test_the_tab_title_follows_a_rename_here_and_in_another_tab(chat) -> None:
    open_page, upstream = chat
    page = open_page()
    send_and_wait(page, upstream, "Plan a trip", 1, text="Sure.")
    other = page.context.new_page()
    other.goto(page.url)
    other.get_by_text("Connected · WebSocket").wait_for()
    # The same title in both tabs once any generated title has landed in both (it may arrive
    # between the two loads).
    deadline = time.monotonic() + 15
    while other.title() != page.title():
        assert time.monotonic() < deadline, (other.title(), page.title())
        page.wait_for_timeout(100)

    page.locator(".conversation-actions > summary").click()
    page.locator("#rename-input").fill("Lisbon in May")
    page.locator(".rename-form button[type=submit]").click()

    page.locator("#conversation-title", has_text="Lisbon in May").wait_for()
    page.wait_for_function("() => document.title === 'Lisbon in May · chatsite'")
    other.wait_for_function("() => document.title === 'Lisbon in May · chatsite'")
    assert other.locator("#conversation-title").inner_text() == "Lisbon in May"


def test_jump_to_latest_shows_while_scrolled_up_during_a_stream(chat) -> None:
    open_page, upstream = chat
    page = open_page(viewport=PHONE)
    send_and_wait(page, upstream, "Something long", 1, text=LONG)
    jump = page.locator("#jump-latest")
    assert not jump.is_visible()  # at the bottom, with nothing streaming

    upstream.script(text=LONG, chunks=20, stall_after=3)
    send(page, "And more")
    page.locator(f"{ASSISTANT}[data-status='streaming'] .msg-text.live p").first.wait_for()
    assert not jump.is_visible()  # following the stream at the bottom
    page.locator("#messages").evaluate("(list) => list.scrollTo(0, 0)")
    jump.wait_for(state="visible")
    assert page.get_by_role("button", name="Latest").count() == 1
    button, composer = jump.bounding_box(), page.locator("#composer").bounding_box()
    assert button["width"] >= 24 and button["height"] >= 24, button
    assert button["y"] + button["height"] <= composer["y"], (button, composer)

    jump.click()
    jump.wait_for(state="hidden")
    assert page.locator("#messages").evaluate(
        "(list) => list.scrollHeight - list.scrollTop - list.clientHeight < 80"
    )

    # The reply grows again before the scroll to the bottom is reported (the scroll event comes
    # a frame later): the view is still following, and the button stays away.
    page.locator("#messages").evaluate("(list) => list.scrollTo(0, 0)")
    jump.wait_for(state="visible")
    page.evaluate(
        """() => new Promise((done) => {
            document.getElementById("jump-latest").click();
            const grown = document.createElement("div");
            grown.style.height = "600px";
            document.querySelector("#messages > article:last-child .msg-text.live").append(grown);
            requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50)));
        })"""
    )
    assert not jump.is_visible()

    upstream.release()
    wait_idle(page, 2)
    assert not jump.is_visible()
