"""What a visitor sees on /streaming-demo, driven in headless Chromium against the real server.

Every reply comes from the offline demo model, whose full text `demo_reply(prompt)` the tests
know in advance: a streaming reply must always show a prefix of it, and a finished one its
rendered Markdown (paragraphs, a numbered list, a code block).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from chat.providers.demo import demo_reply

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"
USER = "#messages > article[data-role='user']"

# The last assistant article: its status, the raw text while streaming, the rendered text after.
_REPLY_STATE = """() => {
  const all = document.querySelectorAll("#messages > article[data-role='assistant']");
  const reply = all[all.length - 1];
  if (!reply) return null;
  const streaming = reply.querySelector(".msg-text.streaming");
  const markdown = reply.querySelector(".msg-text.markdown");
  return {
    count: all.length,
    id: reply.id,
    status: reply.dataset.status,
    raw: streaming ? streaming.textContent : null,
    rendered: markdown ? markdown.innerText : null,
  };
}"""


# --- Helpers ----------------------------------------------------------------------------------


def reply_state(page: Any) -> dict[str, Any] | None:
    return page.evaluate(_REPLY_STATE)


def send(page: Any, text: str) -> None:
    field = page.locator("#message-input")
    field.fill(text)
    field.press("Enter")
    page.wait_for_selector(f"{ASSISTANT}[data-status]")


def wait_for_streamed_text(page: Any, min_chars: int, timeout: float = 10_000) -> None:
    """Until the streaming reply shows at least `min_chars` characters (and still streams)."""
    page.wait_for_function(
        """(min) => {
          const t = document.querySelector(
            "#messages > article[data-status='streaming'] .msg-text.streaming");
          return t && t.textContent.length >= min;
        }""",
        arg=min_chars,
        timeout=timeout,
    )


def watch_stream(
    page: Any, full_text: str, *, timeout: float = 20.0, screenshot: Path | None = None
) -> tuple[list[int], dict[str, Any]]:
    """Sample the reply while it streams. Every sample must be a prefix of `full_text` (nothing
    lost, nothing shown twice); returns the distinct lengths seen and the final state."""
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = reply_state(page)
        assert state is not None, "no assistant message on the page"
        if state["status"] != "streaming":
            return lengths, state
        raw = state["raw"] or ""
        assert full_text.startswith(raw), f"streamed text is not a prefix of the reply: {raw!r}"
        if not lengths or len(raw) != lengths[-1]:
            assert not lengths or len(raw) > lengths[-1], "the streamed text shrank"
            lengths.append(len(raw))
        if screenshot is not None and raw.count("\n\n") >= 3 and "1. " in raw:
            # Mid-stream with a few paragraphs and the list: what a visitor watches.
            screenshot.parent.mkdir(exist_ok=True)
            # Animations off: the blinking cursor is caught in its visible phase.
            page.screenshot(path=str(screenshot), animations="disabled")
            screenshot = None
        time.sleep(0.02)
    pytest.fail(f"the reply was still streaming after {timeout} s")


def wait_for_status(page: Any, status: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        """(status) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length > 0 && all[all.length - 1].dataset.status === status;
        }""",
        arg=status,
        timeout=timeout,
    )


def unmarkdown(text: str) -> str:
    """The demo reply's Markdown as plain words, to compare with rendered text."""
    text = re.sub(r"^```\w*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^\d+\. ", "", text, flags=re.MULTILINE)
    return squash(text.replace("**", ""))


def squash(text: str) -> str:
    return " ".join(text.split())


def parts_of(reply: str) -> dict[str, Any]:
    """The pieces of a demo reply as they read once rendered."""
    paragraphs = reply.split("\n\n")
    return {
        "opening": paragraphs[0].replace("**", ""),
        "closing": paragraphs[-1].replace("**", ""),
        "points": re.findall(r"^\d+\. (.+)$", reply, flags=re.MULTILINE),
        "code": re.search(r"```\w*\n(.*?)```", reply, flags=re.DOTALL).group(1),  # type: ignore[union-attr]
    }


def assert_rendered_reply(page: Any, reply: str) -> None:
    """The finished reply is rendered Markdown with every part of `reply` exactly once."""
    article = page.locator(ASSISTANT).last
    parts = parts_of(reply)
    text = squash(article.locator(".msg-text.markdown").inner_text())
    assert text.count(squash(parts["opening"])) == 1, text
    assert text.count(squash(parts["closing"])) == 1, text
    assert article.locator(".markdown strong").first.is_visible()
    items = [squash(item) for item in article.locator(".markdown ol > li").all_inner_texts()]
    assert items == [squash(point) for point in parts["points"]]
    code = article.locator(".markdown pre code").inner_text()
    assert code.strip() == parts["code"].strip()


def open_chat(page: Any) -> None:
    """A new chat, with its WebSocket connected."""
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()


def assert_conversation_url(page: Any) -> None:
    assert re.search(r"/streaming-demo/c/[0-9a-f-]{36}(\?.*)?$", page.url), page.url


# --- Tests ------------------------------------------------------------------------------------


def test_reply_streams_over_websocket(page: Any, artifacts) -> None:
    prompt = "How do I stream LLM replies into a Django page?"
    full = demo_reply(prompt)
    open_chat(page)
    assert page.locator("#connection-state").get_attribute("data-state") == "connected"

    send(page, prompt)
    lengths, state = watch_stream(page, full, screenshot=artifacts / "streaming-mid-reply.png")

    assert len(lengths) >= 5, f"the reply did not arrive in steps: {lengths}"
    assert state["status"] == "complete"
    assert state["count"] == 1
    assert_rendered_reply(page, full)
    assert page.locator(USER).count() == 1
    assert page.locator(f"{USER} .msg-text").inner_text().strip() == prompt
    assert_conversation_url(page)
    # The figures wait behind the reply's (i).
    page.locator(ASSISTANT).get_by_role("button", name="Reply figures").click()
    meta = page.locator(f"{ASSISTANT} .msg-figures").inner_text()
    assert "tok/s" in meta and "to first token" in meta, meta
    assert re.search(r"\d+(\.\d+)? tok/s", meta), meta
    # The composer is ready for the next message.
    assert page.locator("#send-button").is_visible()
    assert not page.locator("#stop-button").is_visible()
    assert page.locator("#message-input").input_value() == ""


def test_reply_streams_over_sse_when_websocket_is_blocked(page: Any) -> None:
    # As if a proxy refused WebSockets: every socket closes before it ever opens.
    page.route_web_socket(re.compile(r"/ws/"), lambda ws: ws.close(code=1011))
    prompt = "Why would a WebSocket be blocked on some networks?"
    full = demo_reply(prompt)
    page.goto("/streaming-demo")
    state_badge = page.locator("#connection-state[data-state='sse']")
    state_badge.wait_for(timeout=6_000)
    assert state_badge.inner_text().strip() == "SSE fallback"

    # The send's own response streams the reply.
    with page.expect_response(re.compile(r"/streaming-demo/messages$")) as events:
        send(page, prompt)
    assert events.value.headers["content-type"].startswith("text/event-stream")
    lengths, state = watch_stream(page, full)

    assert len(lengths) >= 5, f"the reply did not arrive in steps: {lengths}"
    assert state["status"] == "complete"
    assert state["count"] == 1
    assert_rendered_reply(page, full)
    assert page.locator(USER).count() == 1
    assert_conversation_url(page)


def requests_of(page: Any) -> list[str]:
    """The paths (with queries) of the requests the page makes from now on."""
    paths: list[str] = []
    page.on("request", lambda request: paths.append(re.sub(r"^https?://[^/]+", "", request.url)))
    return paths


def open_sse_chat(page: Any) -> None:
    page.goto("/streaming-demo?transport=sse")
    page.locator("#connection-state[data-state='sse']").get_by_text("Server-sent events").wait_for()


def test_reply_streams_over_sse_when_asked_to(page: Any) -> None:
    prompt = "Show me server-sent events"
    full = demo_reply(prompt)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_sse_chat(page)
    requests = requests_of(page)

    send(page, prompt)
    lengths, state = watch_stream(page, full)

    assert len(lengths) >= 5, f"the reply did not arrive in steps: {lengths}"
    assert state["status"] == "complete"
    assert_rendered_reply(page, full)
    # One request carries the send and the whole reply: nothing asks for the reply again.
    assert [path for path in requests if "/static/" not in path] == ["/streaming-demo/messages"]
    assert sockets == [], "the page opened a WebSocket although SSE was asked for"
    assert_conversation_url(page)
    assert page.url.endswith("?transport=sse")  # the conversation URL keeps the choice


def stop_and_check_partial_text(page: Any, full: str) -> tuple[Any, str]:
    """Press Stop mid-reply: it ends as "stopped by user", keeping a beginning of the reply;
    returns the reply's article and its text. Not timed (speed belongs in benchmarks): a reply the
    stop missed would end "complete" and never "stopped"; the wait's bound is a hang guard."""
    page.locator("#stop-button").click()
    wait_for_status(page, "stopped", timeout=10_000)

    article = page.locator(ASSISTANT).last
    stopped_text = article.locator(".msg-text.markdown").inner_text()
    assert stopped_text.strip(), "the partial text was lost"
    assert unmarkdown(full).startswith(squash(stopped_text)), stopped_text
    assert len(squash(stopped_text)) < len(unmarkdown(full)), "the reply was not stopped"
    assert article.locator(".badge-stopped").inner_text().strip() == "Stopped by user"
    assert page.locator("#send-button").is_visible()
    return article, stopped_text


def test_stop_mid_reply_keeps_partial_text_after_reload(page: Any) -> None:
    prompt = "Tell me something long enough to interrupt"
    full = demo_reply(prompt)
    open_chat(page)
    send(page, prompt)
    wait_for_streamed_text(page, 40)
    assert page.locator("#stop-button").is_visible()
    assert not page.locator("#send-button").is_visible()

    article, stopped_text = stop_and_check_partial_text(page, full)
    assert not page.locator("#stop-button").is_visible()
    message_id = article.get_attribute("id")
    assert_conversation_url(page)

    page.reload()
    reloaded = page.locator(f"#{message_id}")
    assert reloaded.get_attribute("data-status") == "stopped"
    assert reloaded.locator(".msg-text.markdown").inner_text() == stopped_text
    assert reloaded.locator(".badge-stopped").inner_text().strip() == "Stopped by user"
    assert page.locator(ASSISTANT).count() == 1
    # A stopped reply stays stopped: no more text arrives.
    page.wait_for_timeout(500)
    assert reloaded.locator(".msg-text.markdown").inner_text() == stopped_text


def test_stop_mid_reply_over_sse_keeps_partial_text(page: Any) -> None:
    # Stop is a second POST of the composer while the send's response still streams the reply.
    prompt = "Stop me over SSE"
    full = demo_reply(prompt)
    open_sse_chat(page)
    requests = requests_of(page)
    send(page, prompt)
    wait_for_streamed_text(page, 80)  # past the prompt, which the reply has in bold

    stop_and_check_partial_text(page, full)
    assert [path for path in requests if "/static/" not in path] == ["/streaming-demo/messages"] * 2


def test_a_dropped_sse_send_resumes_over_get_without_loss(page: Any, page_errors) -> None:
    # htmx logs the dropped stream's network error.
    page_errors.allow(r"htmx:sse:error")
    prompt = "What if the connection drops while the reply streams over SSE?"
    full = demo_reply(prompt)
    open_sse_chat(page)
    requests = requests_of(page)
    send(page, prompt)
    wait_for_streamed_text(page, 60)

    # window.stop() aborts the page's fetches: the send's response ends as a dropped connection.
    with page.expect_response(re.compile(r"/replies/\d+/events\?after=[1-9]\d*$")) as resumed:
        page.evaluate("() => window.stop()")
    lengths, state = watch_stream(page, full)

    assert resumed.value.headers["content-type"].startswith("text/event-stream")
    assert len(lengths) >= 3, f"the reply did not continue live after the drop: {lengths}"
    assert state["status"] == "complete" and state["count"] == 1
    assert_rendered_reply(page, full)
    assert [path for path in requests if "/events" in path] == [
        re.sub(r"^https?://[^/]+", "", resumed.value.url)
    ]
    assert page.locator("#connection-state").inner_text() == "Server-sent events"


def test_reload_mid_reply_resumes_and_finishes_once(page: Any, page_errors) -> None:
    prompt = "What happens if I reload while a reply streams?"
    full = demo_reply(prompt)
    open_chat(page)
    send(page, prompt)
    # Long enough that the job has saved some text (it does every second), with most to come.
    wait_for_streamed_text(page, 220)
    assert_conversation_url(page)

    response = page.reload(wait_until="domcontentloaded")
    html = response.text()
    # The server renders the reply as it is now: streaming, with the text so far.
    assert 'data-status="streaming"' in html
    served = re.search(
        r'class="msg-text streaming"[^>]*><span data-seq="\d+">(.+?)</span>', html, re.S
    )
    assert served and served.group(1).strip(), "the reloaded page did not show the text so far"
    state = reply_state(page)
    assert state and state["status"] == "streaming" and state["raw"], state

    lengths, state = watch_stream(page, full)
    assert len(lengths) >= 3, f"the reply did not continue live after the reload: {lengths}"
    assert state["status"] == "complete"
    assert state["count"] == 1
    assert page.locator(USER).count() == 1
    assert_rendered_reply(page, full)

    # The same conversation opened afresh shows exactly what this page ended with.
    fresh = page.context.new_page()
    page_errors.watch(fresh)
    fresh.goto(page.url)
    assert fresh.locator(ASSISTANT).count() == 1
    assert (
        fresh.locator(f"{ASSISTANT} .msg-text.markdown").inner_text()
        == page.locator(f"{ASSISTANT} .msg-text.markdown").inner_text()
    )


def test_reload_mid_reply_over_sse_opens_one_stream_and_shows_each_token_once(page: Any) -> None:
    # The page's script and htmx's first pass over the page both used to start the reply's
    # event stream: two streams appended every token twice until the reply ended.
    prompt = "What happens if I reload while a reply streams over SSE?"
    full = demo_reply(prompt)
    open_sse_chat(page)
    send(page, prompt)
    wait_for_streamed_text(page, 60)
    requests = requests_of(page)
    page.reload()
    lengths, state = watch_stream(page, full)
    assert len(lengths) >= 3, f"the reply did not continue live after the reload: {lengths}"
    assert state["status"] == "complete" and state["count"] == 1
    assert len([path for path in requests if "/events" in path]) == 1, requests
    assert_rendered_reply(page, full)


def test_no_javascript_form_still_posts_and_shows_finished_reply(new_page: Any) -> None:
    page = new_page(java_script_enabled=False)
    prompt = "Does this work without JavaScript?"
    full = demo_reply(prompt)
    page.goto("/streaming-demo")
    assert "No JavaScript" in page.locator("#connection-state").inner_text()

    page.locator("#message-input").fill(prompt)
    with page.expect_navigation(timeout=20_000):
        page.locator("#send-button").click()

    assert_conversation_url(page)
    article = page.locator(ASSISTANT)
    assert article.count() == 1
    assert article.get_attribute("data-status") == "complete"
    assert_rendered_reply(page, full)
    assert page.locator(f"{USER} .msg-text").inner_text().strip() == prompt
    assert "tok/s" in article.locator(".msg-meta").inner_text()


def test_phone_width_is_usable(new_page: Any) -> None:
    width = 390
    page = new_page(viewport={"width": width, "height": 844}, is_mobile=True, has_touch=True)
    prompt = "Does this fit on a phone?"
    full = demo_reply(prompt)
    open_chat(page)

    def assert_fits() -> None:
        for selector in ("#message-input", "#send-button"):
            element = page.locator(selector)
            assert element.is_visible(), f"{selector} is hidden"
            box = element.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"the page scrolls sideways ({scroll_width}px)"

    assert_fits()
    page.locator("#message-input").fill(prompt)
    page.locator("#send-button").tap()
    page.wait_for_selector(f"{ASSISTANT}[data-status]")
    lengths, state = watch_stream(page, full)
    assert len(lengths) >= 5, f"the reply did not arrive in steps: {lengths}"
    assert state["status"] == "complete"
    assert_rendered_reply(page, full)
    assert_fits()  # the code block scrolls inside itself, not the page


def test_errors_show_in_the_composer(page: Any) -> None:
    server_errors: list[str] = []

    def on_response(response: Any) -> None:
        if response.status >= 500:
            server_errors.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    open_chat(page)
    limit = int(page.locator("#message-input").get_attribute("data-max") or 0)
    assert limit > 0

    # Too long (the textarea's maxlength stops typing; a tampered form is refused by the server).
    page.evaluate(
        """(length) => {
          const field = document.getElementById("message-input");
          field.removeAttribute("maxlength");
          field.value = "x".repeat(length);
        }""",
        limit + 1,
    )
    page.locator("#send-button").click()
    error = page.locator("#composer-error")
    error.get_by_text("the limit is").wait_for()
    assert f"{limit + 1:,}" in error.inner_text() and f"{limit:,}" in error.inner_text()
    assert error.is_visible()
    assert page.locator("#messages > article").count() == 0
    assert page.locator("#connection-state").get_attribute("data-state") == "connected"

    # Only spaces: `required` lets it through, the server asks for a message.
    page.locator("#message-input").fill("   ")
    page.locator("#send-button").click()
    error.get_by_text("Type a message first.").wait_for()
    assert page.locator("#messages > article").count() == 0

    # A good message afterwards clears the error and goes through.
    send(page, "Now a normal question")
    page.wait_for_function(
        "() => document.getElementById('composer-error').textContent.trim() === ''"
    )
    assert not error.is_visible()
    wait_for_status(page, "complete")
    assert server_errors == []


def test_errors_show_in_the_composer_over_sse(page: Any, page_errors) -> None:
    # Over HTTP the refusal is a 400 whose body is the error; Chromium logs the status.
    page_errors.allow(r"status of 400 .*/streaming-demo/messages")
    page.goto("/streaming-demo?transport=sse")
    page.locator("#connection-state[data-state='sse']").wait_for()

    with page.expect_response(re.compile(r"/streaming-demo/messages$")) as posted:
        page.locator("#message-input").fill("   ")
        page.locator("#send-button").click()
    assert posted.value.status == 400
    page.locator("#composer-error").get_by_text("Type a message first.").wait_for()
    assert page.locator("#messages > article").count() == 0


_SET_HIDDEN = """(hidden) => {
  // What the browser does when the tab goes to the background (or comes back).
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState",
                        {configurable: true, get: () => (hidden ? "hidden" : "visible")});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_background_tab_drops_the_socket_and_resumes_without_loss(page: Any) -> None:
    # htmx's hx-ws closes the socket in a hidden tab; the reply goes on on the server, and when
    # the tab comes back a new socket resumes from the last fragment the page has.
    prompt = "What happens to a reply in a background tab?"
    full = demo_reply(prompt)
    open_chat(page)
    send(page, prompt)
    wait_for_streamed_text(page, 60)

    page.evaluate(_SET_HIDDEN, True)
    # A function, not a bare expression: Playwright evaluates an expression that is not yet true
    # with eval() in the page, which the page's CSP (rightly) refuses.
    page.wait_for_function(
        "() => document.getElementById('connection-state').dataset.state === 'reconnecting'"
    )
    paused = reply_state(page)
    time.sleep(1.0)
    assert reply_state(page) == paused, "nothing arrives while the socket is closed"

    page.evaluate(_SET_HIDDEN, False)
    page.get_by_text("Connected · WebSocket").wait_for()
    lengths, state = watch_stream(page, full)

    assert state["status"] == "complete" and state["count"] == 1
    assert_rendered_reply(page, full)


def test_composer_comforts(page: Any) -> None:
    open_chat(page)
    field = page.locator("#message-input")

    field.type("line one")
    field.press("Shift+Enter")
    field.type("line two")

    assert field.input_value() == "line one\nline two"
    assert page.locator("#char-count").inner_text() == "17 / 8,000"
    assert page.locator("#messages > article").count() == 0, "Shift+Enter must not send"

    field.press("Enter")
    wait_for_status(page, "complete")
    assert page.locator(f"{USER} .msg-text").inner_text() == "line one\nline two"
    assert page.locator("#char-count").inner_text() == "0 / 8,000"
    copy = page.locator(f"{ASSISTANT} .markdown .code-block .code-head .copy-code")
    assert copy.count() == 1 and copy.is_visible()
    assert copy.get_attribute("aria-label") == "Copy code block 1"
    assert page.locator(f"{ASSISTANT} .msg-actions [data-copy]").is_visible()


def test_regenerate_replaces_the_last_reply(page: Any) -> None:
    prompt = "Regenerate this answer"
    open_chat(page)
    send(page, prompt)
    wait_for_status(page, "complete")
    first_id = reply_state(page)["id"]  # type: ignore[index]

    page.locator(f"{ASSISTANT} button.regenerate").click()
    page.wait_for_function(
        """(oldId) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length === 1 && all[0].id !== oldId;
        }""",
        arg=first_id,
    )
    lengths, state = watch_stream(page, demo_reply(prompt))

    assert state["status"] == "complete" and state["count"] == 1
    assert page.locator(USER).count() == 1
    assert_rendered_reply(page, demo_reply(prompt))
    page.reload()
    assert page.locator("#messages > article").count() == 2  # the old reply stays hidden


def test_a_provider_error_shows_in_the_bubble_and_retry_recovers(
    new_page: Any, provider_server: tuple[str, Any]
) -> None:
    url, upstream = provider_server
    page = new_page(base_url=url)
    open_chat(page)
    assert page.locator("#model").input_value() == "openai:gpt-4.1-mini"
    upstream.script(text="Half a reply, then the line went dead.", chunks=4, drop_after=2)

    send(page, "Will this work?")
    wait_for_status(page, "error")

    reply = page.locator(ASSISTANT).last
    assert "dropped" in reply.locator(".msg-error").inner_text().lower()
    assert reply.locator(".markdown").inner_text().startswith("Half a reply")  # text kept
    assert "Provider error" in reply.locator(".badge").inner_text()

    upstream.script(text="All good this time.")
    reply.locator("button.retry").click()
    wait_for_status(page, "complete")

    assert page.locator(ASSISTANT).count() == 1
    assert page.locator(ASSISTANT).last.locator(".markdown").inner_text() == "All good this time."


def test_a_streaming_reply_is_shown_as_live_markdown(page: Any) -> None:
    prompt = "Render me while you stream"
    open_chat(page)
    send(page, prompt)
    page.wait_for_function(
        """() => {
          const reply = document.querySelector("#messages > article[data-status='streaming']");
          return reply && /\\n2\\. /.test(reply.querySelector(".msg-text.streaming").textContent);
        }"""
    )

    reply = page.locator(f"{ASSISTANT}[data-status='streaming']")
    live = reply.locator(".msg-text.live")
    # Bold and the numbered list already look as they will when finished; no raw Markdown shows.
    assert live.locator("strong").first.is_visible()
    assert live.locator("ol > li").count() >= 2
    assert "**" not in live.inner_text()
    assert not reply.locator(".msg-text.streaming").is_visible()
    assert live.locator(".cursor").count() == 1

    wait_for_status(page, "complete")
    finished = page.locator(ASSISTANT).last
    assert finished.locator(".msg-text.live").count() == 0
    assert finished.locator(".markdown pre code span").count() > 0  # highlighted by the server
