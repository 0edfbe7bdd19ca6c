"""Managing conversations and their branches in headless Chromium, against the real server with
the OpenAI provider pointed at the fake upstream — so each test can assert exactly what history
the model was sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"
USER = "#messages > article[data-role='user']"


def open_chat(page: Any) -> None:
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()


def wait_idle(page: Any, replies: int | None = None) -> None:
    """Until no reply streams (and, if given, `replies` replies are shown)."""
    page.wait_for_function(
        """(count) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          if (count !== null && all.length !== count) return false;
          return all.length > 0 && ![...all].some((a) => a.dataset.status === "streaming");
        }""",
        arg=replies,
        timeout=15_000,
    )


def wait_reply(page: Any, text: str) -> None:
    """Until a finished reply on the page reads `text`."""
    page.locator(f"{ASSISTANT} .msg-text.markdown", has_text=text).wait_for()


def send(page: Any, upstream: Any, text: str, reply: str) -> None:
    upstream.script(text=reply)
    before = page.locator(ASSISTANT).count()
    field = page.locator("#message-input")
    field.fill(text)
    field.press("Enter")
    wait_idle(page, before + 1)


def shown(page: Any) -> list[str]:
    return [
        text.strip() for text in page.locator("#messages > article .msg-text").all_inner_texts()
    ]


def contents(upstream: Any) -> list[str]:
    return [message["content"] for message in upstream.requests[-1].body["messages"]]


@pytest.fixture
def chat(new_page: Any, provider_server: tuple[str, Any]) -> tuple[Any, Any]:
    url, upstream = provider_server
    page = new_page(base_url=url)
    open_chat(page)
    return page, upstream


def test_edit_and_branch_switch_send_only_the_visible_branch(chat: tuple[Any, Any]) -> None:
    page, upstream = chat
    send(page, upstream, "Capital of France?", "Paris.")
    send(page, upstream, "And Germany?", "Berlin.")

    upstream.script(text="Rome.")
    second = page.locator(USER).nth(1)
    second.locator(".edit-message > summary").click()
    second.locator("textarea").fill("And Italy?")
    second.get_by_role("button", name="Save & send").click()
    wait_reply(page, "Rome.")
    wait_idle(page, 2)

    assert contents(upstream) == ["Capital of France?", "Paris.", "And Italy?"]
    assert shown(page) == ["Capital of France?", "Paris.", "And Italy?", "Rome."]
    edited = page.locator(USER).nth(1)
    assert edited.locator(".version-count").inner_text() == "2/2"

    # ‹ : back to the original question and the reply that followed it.
    edited.get_by_role("button", name="Previous version").click()
    wait_reply(page, "Berlin.")
    assert shown(page) == ["Capital of France?", "Paris.", "And Germany?", "Berlin."]
    assert page.locator(USER).nth(1).locator(".version-count").inner_text() == "1/2"

    # The next message continues the branch on the screen, and only that branch is sent.
    send(page, upstream, "And Austria?", "Vienna.")
    assert contents(upstream) == [
        "Capital of France?",
        "Paris.",
        "And Germany?",
        "Berlin.",
        "And Austria?",
    ]
    # A reload shows the same branch.
    page.reload()
    assert shown(page)[-2:] == ["And Austria?", "Vienna."]


def test_regenerate_keeps_every_version_and_switches_between_them(
    chat: tuple[Any, Any],
) -> None:
    page, upstream = chat
    send(page, upstream, "Tell me a joke", "First take.")

    upstream.script(text="Second take.")
    page.locator(ASSISTANT).last.get_by_role("button", name="Regenerate this reply").click()
    wait_reply(page, "Second take.")
    wait_idle(page, 1)
    assert contents(upstream) == ["Tell me a joke"]

    reply = page.locator(ASSISTANT).last
    assert reply.locator(".version-count").inner_text() == "2/2"
    reply.get_by_role("button", name="Previous version").click()
    wait_reply(page, "First take.")
    assert page.locator(ASSISTANT).last.locator(".version-count").inner_text() == "1/2"
    assert page.locator(ASSISTANT).last.get_by_role("button", name="Previous version").is_disabled()

    page.locator(ASSISTANT).last.get_by_role("button", name="Next version").click()
    wait_reply(page, "Second take.")
    assert page.locator(ASSISTANT).count() == 1


def test_a_failed_turn_can_be_deleted_and_is_never_sent_again(chat: tuple[Any, Any]) -> None:
    page, upstream = chat
    send(page, upstream, "Hello", "Hi!")
    upstream.script(status=401)
    field = page.locator("#message-input")
    field.fill("This one is refused")
    field.press("Enter")
    wait_idle(page, 2)
    failed = page.locator(ASSISTANT).last
    assert failed.get_attribute("data-status") == "error"
    assert failed.locator(".meta-not-billed").inner_text() == "Not billed"

    failed.get_by_role("button", name="Delete this failed turn").click()
    page.wait_for_function("() => document.querySelectorAll('#messages > article').length === 2")
    assert shown(page) == ["Hello", "Hi!"]

    send(page, upstream, "Next question", "Next answer.")
    assert contents(upstream) == ["Hello", "Hi!", "Next question"]


def test_rename_search_export_and_delete(chat: tuple[Any, Any]) -> None:
    page, upstream = chat
    send(page, upstream, "Plan a week in Lisbon", "Start in Alfama with a <b>pastel</b>.")
    conversation_url = page.url
    assert re.search(r"/streaming-demo/c/[0-9a-f-]{36}", conversation_url)

    # Rename, inline: the title and the sidebar change without a reload.
    page.locator(".conversation-actions > summary").click()
    page.locator("#rename-input").fill("Lisbon trip")
    page.get_by_role("button", name="Rename").click()
    page.locator("#conversation-title", has_text="Lisbon trip").wait_for()
    assert page.locator(".conversation-item.active").inner_text() == "Lisbon trip"
    assert not page.locator(".actions-menu").is_visible()
    page.reload()
    assert page.locator("#conversation-title").inner_text() == "Lisbon trip"

    # Search finds it by message text, escaped, and leads to it.
    page.locator("#search-input").fill("pastel")
    hit = page.locator(".search-hit").first
    hit.wait_for()
    assert hit.locator("mark").inner_text() == "pastel"
    assert "<b>pastel</b>" in hit.locator(".search-hit-snippet").inner_text()
    page.locator("#search-input").fill("no such words anywhere")
    page.get_by_text("Nothing found").wait_for()
    page.locator("#search-input").fill("pastel")
    page.locator(".search-hit").first.click()
    page.wait_for_url(conversation_url)

    # Export: a Markdown and a JSON download, named after the conversation.
    page.locator(".conversation-actions > summary").click()
    with page.expect_download() as info:
        page.get_by_role("link", name="Markdown").click()
    download = info.value
    assert re.fullmatch(r"lisbon-trip-\d{4}-\d{2}-\d{2}\.md", download.suggested_filename)
    with open(download.path(), encoding="utf-8") as markdown:
        text = markdown.read()
    assert text.startswith("# Lisbon trip") and "## You\n\nPlan a week in Lisbon" in text
    with page.expect_download() as info:
        page.get_by_role("link", name="JSON").click()
    with open(info.value.path(), encoding="utf-8") as exported:
        document = json.load(exported)
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["messages"][1]["model"] == "gpt-4.1-mini"
    assert document["messages"][1]["usage"]["source"] == "provider"

    # Delete, after a confirmation step: gone from the sidebar, its link is a 404.
    page.locator(".delete-conversation > summary").click()
    page.get_by_role("button", name="Delete conversation").click()
    page.wait_for_url(re.compile(r"/streaming-demo\?deleted=[0-9a-f-]+$"))
    assert page.locator(".conversation-item", has_text="Lisbon trip").count() == 0
    assert page.locator(".deleted-note").inner_text().startswith("Deleted “Lisbon trip”.")
    assert page.request.get(conversation_url).status == 404
    page.locator("#search-input").fill("pastel")
    page.get_by_text("Nothing found").wait_for()


@pytest.fixture(scope="module")
def titled_server(serving_with_upstream) -> Iterator[tuple[str, Any]]:
    """The app with generated titles (CHAT_TITLE_MODEL) from the fake upstream."""
    with serving_with_upstream(
        "chatsite-e2e-titles-", CHAT_TITLE_MODEL="openai:gpt-4.1-nano"
    ) as served:
        yield served


def test_a_generated_title_appears_without_a_reload(
    new_page: Any, titled_server: tuple[str, Any]
) -> None:
    url, upstream = titled_server
    page = new_page(base_url=url)
    open_chat(page)
    # The reply and the title request both get this text; the title is cleaned of its dot.
    send(page, upstream, "I want to spend seven days in Lisbon, what should I see?", "Lisbon week.")

    page.locator("#conversation-title", has_text="Lisbon week").wait_for(timeout=15_000)
    assert page.locator(".conversation-item.active").inner_text() == "Lisbon week"
    # Its row's ⋯ is named after it too.
    row = page.locator(".conversation-row", has=page.locator(".conversation-item.active"))
    assert row.locator(".row-menu-button").get_attribute("aria-label") == (
        "Actions for “Lisbon week”"
    )
    assert upstream.requests[-1].body["model"] == "gpt-4.1-nano"
    assert page.title().startswith("Lisbon week")


@pytest.mark.parametrize("how", ["Cancel", "Escape"])
def test_an_edit_is_cancelled_on_screen_or_with_escape_and_says_so(
    chat: tuple[Any, Any], how: str
) -> None:
    page, upstream = chat
    send(page, upstream, "Capital of France?", "Paris.")
    sent = len(upstream.requests)
    edit = page.locator(USER).first.locator(".edit-message")
    edit.locator("summary").click()
    edit.locator("textarea").fill("Capital of Spain?")
    cancel = edit.get_by_role("button", name="Cancel")
    box = cancel.bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24, box

    if how == "Cancel":
        cancel.click()
    else:
        page.keyboard.press("Escape")

    assert edit.evaluate("(details) => details.open") is False
    assert page.evaluate("document.activeElement.textContent") == "Edit"
    assert "Edit cancelled" in page.text_content("#composer-status")
    assert page.locator(f"{USER} .msg-text").first.text_content() == "Capital of France?"
    edit.locator("summary").click()
    assert edit.locator("textarea").input_value() == "Capital of France?"
    assert len(upstream.requests) == sent  # nothing was sent


def test_without_javascript_an_edit_offers_no_dead_cancel(
    new_page: Any, provider_server: tuple[str, Any]
) -> None:
    url, _ = provider_server
    page = new_page(base_url=url, java_script_enabled=False)
    page.goto("/streaming-demo")
    page.fill("#message-input", "Hello")
    page.click("#send-button")
    page.wait_for_selector(f"{USER} .edit-message")
    assert page.locator(f"{USER} .cancel-edit").first.is_hidden()


# The position of the n-th message from the top of the chat's viewport, and what has focus.
_PLACE = """(n) => {
  const article = document.querySelectorAll("#messages > article")[n];
  const active = document.activeElement;
  return {
    top: Math.round(article.getBoundingClientRect().top),
    focus: active === document.body ? "body" : active.className || active.tagName,
    inArticle: article.contains(active),
  };
}"""


def test_a_version_switch_or_a_rating_keeps_the_message_in_place_and_the_focus(
    chat: tuple[Any, Any],
) -> None:
    """‹ › jumped to the bottom of the chat (scroll 513 → 2759 px) and, like 👍/👎 and
    Regenerate, dropped the keyboard focus on the page's body; the controls were under 24 px."""
    page, upstream = chat
    long = "A long answer. " * 120
    send(page, upstream, "First question?", long)
    upstream.script(text="Another take. " * 120)
    page.locator(ASSISTANT).nth(0).get_by_role("button", name="Regenerate this reply").click()
    page.locator(f"{ASSISTANT} .version-count", has_text="2/2").wait_for()
    wait_idle(page)
    for question in ("Second?", "Third?", "Fourth?"):
        send(page, upstream, question, long)
    reply = page.locator(ASSISTANT).first  # article 1 of the list: the first reply, 2 versions
    reply.scroll_into_view_if_needed()
    page.evaluate("document.getElementById('messages').scrollTop -= 120")
    before = page.evaluate(_PLACE, 1)

    previous = reply.get_by_role("button", name="Previous version")
    for control in (previous, reply.locator(".versions button").first):
        box = control.bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24, box
    previous.focus()
    page.keyboard.press("Enter")
    page.locator(f"{ASSISTANT} .version-count", has_text="1/2").first.wait_for()
    page.wait_for_timeout(300)  # a frame or two for any scroll to happen
    after = page.evaluate(_PLACE, 1)
    assert abs(after["top"] - before["top"]) <= 2, (before, after)
    assert after["inArticle"] and "version" in after["focus"], after

    rating = page.locator(ASSISTANT).first.locator(".feedback-up")
    box = rating.bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24, box
    rating.focus()
    page.keyboard.press("Enter")
    page.locator(f"{ASSISTANT} .feedback-up[aria-pressed=true]").first.wait_for()
    page.wait_for_function("document.activeElement.classList.contains('feedback-up')", timeout=2000)
    edit = page.locator(USER).first.locator(".edit-message > summary").bounding_box()
    assert edit["width"] >= 24 and edit["height"] >= 24, edit


def test_a_system_prompt_once_set_shows_on_its_toggle(chat: tuple[Any, Any]) -> None:
    """The System toggle looked the same with or without a prompt."""
    page, upstream = chat
    mark = page.locator(".system-prompt .prompt-set")
    assert mark.is_hidden()
    page.locator(".system-prompt summary").click()
    page.fill("#system-prompt-input", "Answer like a pirate.")
    assert mark.is_visible()
    page.fill("#system-prompt-input", "  ")
    assert mark.is_hidden()
    page.fill("#system-prompt-input", "Answer like a pirate.")
    send(page, upstream, "Hello?", "Ahoy.")
    assert upstream.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "Answer like a pirate.",
    }

    page.reload()
    page.get_by_text("Connected · WebSocket").wait_for()
    summary = page.locator(".system-prompt summary")
    assert mark.is_visible()
    assert summary.get_attribute("title") == "Answer like a pirate."
    assert "(set)" in summary.text_content()  # what a screen reader hears
