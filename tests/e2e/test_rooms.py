"""The live room in Chromium on two Daphne workers sharing Redis: the owner's page on one
worker, the member's on the other. Presence, typing, a reply streamed to both, Stop from the
member of their own reply; an outsider (signed in, not a member) refused everywhere while a
reply streams on; a member removed mid-reply; screenshots of the room in light and dark, desktop
and phone width, and the two pages side by side (the README's)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, serve_room):
    with serve_room(tmp_path_factory.mktemp("rooms"), CHAT_DEMO_TOKENS_PER_SECOND="15") as served:
        yield served


def _page(browser, url: str, session_key: str, *, width=1280, height=800, dark=False):
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light"
    )
    context.add_cookies([{"name": "sessionid", "value": session_key, "url": url}])
    return context, context.new_page()


def test_two_members_on_two_workers_share_the_room(browser, two_workers):
    (owner_url, owner_key), (member_url, member_key) = two_workers["owner"], two_workers["member"]
    path = f"/streaming-demo/c/{two_workers['conversation']}"
    owner_context, owner = _page(browser, owner_url, owner_key)
    member_context, member = _page(browser, member_url, member_key)
    try:
        owner.goto(owner_url + path)
        owner.wait_for_selector("#connection-state[data-state=connected]")
        member.goto(member_url + path)
        member.wait_for_selector("#connection-state[data-state=connected]")
        # Presence, across workers, within 2 s: both chips on both pages, "Bo Berg joined".
        started = time.monotonic()
        owner.wait_for_selector("#room-presence .presence-chip >> nth=1", timeout=2000)
        assert time.monotonic() - started < 2
        assert "Bo Berg joined" in owner.text_content("#room-announcer")
        member.wait_for_selector("#room-presence .presence-chip >> nth=1", timeout=2000)
        assert owner.text_content("#room-presence").count("BB") == 1

        # Typing: shown to the owner within 1 s, never to the typist, gone within 6 s.
        member.click("#message-input")
        member.keyboard.type("Shall we")
        owner.wait_for_selector("#room-typing:has-text('Bo Berg is typing')", timeout=1000)
        assert member.text_content("#room-typing") == ""
        owner.wait_for_selector("#room-typing:text-is('')", state="attached", timeout=6500)

        # The member sends: both pages show the bubble with its author and stream the reply.
        member.keyboard.type(" go to Lisbon?")
        member.keyboard.press("Enter")
        owner.wait_for_selector(".msg-user .msg-author:text-is('Bo Berg')", timeout=3000)
        selector = '[data-role="assistant"][data-status="complete"] .markdown'
        owner.wait_for_selector(selector, timeout=30000)
        member.wait_for_selector(selector, timeout=30000)
        assert owner.inner_text(selector) == member.inner_text(selector)

        # Stop from the member, of their own reply (a member stops only their own turns; the
        # owner any), while it streams on both pages: both see it stopped.
        member.fill("#message-input", "Tell me more about the trams")
        member.keyboard.press("Enter")
        owner.wait_for_selector('[data-role="assistant"][data-status="streaming"]', timeout=5000)
        member.wait_for_selector(
            '[data-status="streaming"] .msg-text span[data-seq] >> nth=2', state="attached"
        )
        stopped_at = time.monotonic()
        member.click("#stop-button")
        for page in (owner, member):
            page.wait_for_selector('[data-status="stopped"], .badge-stopped', timeout=3000)
        assert time.monotonic() - stopped_at < 3
        owner_text = owner.inner_text('[data-role="assistant"] >> nth=-1')
        member_text = member.inner_text('[data-role="assistant"] >> nth=-1')
        assert owner_text.split("\n")[0] == member_text.split("\n")[0]
        _screenshots(browser, two_workers, path, owner, member)
    finally:
        owner_context.close()
        member_context.close()


def _screenshots(browser, two_workers, path, owner, member) -> None:
    """The room as each member sees it: light and dark, desktop and 390 px, and both pages side
    by side."""
    docs = REPO / "docs"
    _side_by_side(browser, owner, member, docs / "screenshot-room-side-by-side.png")
    member.click("#message-input")
    member.keyboard.type("Bookmarking")
    owner.wait_for_selector("#room-typing:has-text('is typing')", timeout=2000)
    owner.screenshot(path=str(docs / "screenshot-room-light-desktop.png"))
    (member_url, member_key) = two_workers["member"]
    for dark, width, name in (
        (True, 1280, "dark-desktop"),
        (False, 390, "light-390"),
        (True, 390, "dark-390"),
    ):
        context, page = _page(browser, member_url, member_key, width=width, height=844, dark=dark)
        try:
            page.goto(member_url + path)
            page.wait_for_selector("#room-presence .presence-chip >> nth=1", timeout=5000)
            owner.click("#message-input")
            owner.keyboard.type("x")
            page.wait_for_selector("#room-typing:has-text('is typing')", timeout=3000)
            page.screenshot(path=str(docs / f"screenshot-room-{name}.png"))
            owner.fill("#message-input", "")
            time.sleep(2.1)  # the typing throttle
        finally:
            context.close()


# The outsider's own socket, opened from their page as a script on that page would: the frames
# it sends, and every frame the server answers until there is one per frame sent.
SOCKET_ATTEMPT = """async ({url, frames}) => {
  const socket = new WebSocket(url);
  const received = [];
  socket.onmessage = (event) => received.push(event.data);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onclose = (event) => reject(new Error(`closed with ${event.code}`));
  });
  for (const frame of frames) socket.send(JSON.stringify(frame));
  while (received.length < frames.length && socket.readyState === WebSocket.OPEN) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const open = socket.readyState === WebSocket.OPEN;
  socket.close();
  return {received, open};
}"""


def _reply_text(page, selector: str) -> str:
    """A finished reply's text without the buttons the page adds to it (Copy) when it can."""
    return page.eval_on_selector(
        selector,
        """(reply) => {
            const copy = reply.cloneNode(true);
            copy.querySelectorAll("button").forEach((button) => button.remove());
            return copy.textContent;
        }""",
    )


def _streaming_reply(page) -> int:
    selector = '[data-role="assistant"][data-status="streaming"]'
    page.wait_for_selector(f"{selector} .msg-text span[data-seq]", state="attached", timeout=10000)
    return int(page.get_attribute(selector, "data-message-id"))


def test_an_outsider_is_refused_everywhere_and_the_reply_streams_on(browser, two_workers):
    (owner_url, owner_key), (member_url, member_key) = two_workers["owner"], two_workers["member"]
    outsider_key = two_workers["outsider"][1]
    conversation = two_workers["conversation"]
    path = f"/streaming-demo/c/{conversation}"
    owner_context, owner = _page(browser, owner_url, owner_key)
    member_context, member = _page(browser, member_url, member_key)
    outsider_context, outsider = _page(browser, owner_url, outsider_key)
    try:
        for page, url in ((owner, owner_url), (member, member_url)):
            page.goto(url + path)
            page.wait_for_selector("#connection-state[data-state=connected]")
        owner.wait_for_selector("#room-presence .presence-chip >> nth=1", timeout=5000)
        owner.fill("#message-input", "What should we see in Porto?")
        owner.keyboard.press("Enter")
        reply_id = _streaming_reply(owner)
        assert _streaming_reply(member) == reply_id

        # The socket, on both workers (the reply runs on the owner's): watch and stop by the
        # reply's id, stop and join by the conversation's. Each is "Not found.", the socket
        # stays open, and not one piece of the reply reaches it.
        frames = [
            {"action": "watch", "message_id": reply_id, "after": 0},
            {"action": "stop", "message_id": reply_id},
            {"action": "stop", "conversation": conversation},
            {"action": "join", "conversation": conversation, "client": "outsider"},
        ]
        for url in (member_url, owner_url):
            assert outsider.goto(url + "/streaming-demo").status == 200  # their own chat
            ws_url = url.replace("http://", "ws://") + "/ws/chat/"
            answer = outsider.evaluate(SOCKET_ATTEMPT, {"url": ws_url, "frames": frames})
            assert answer["open"], answer
            assert len(answer["received"]) == len(frames), answer
            for received in answer["received"]:
                assert 'id="composer-error"' in received and "Not found." in received
                assert "data-seq" not in received and "msg-text" not in received
        # They came while the reply streamed, so its ending below says the stops did nothing.
        for page in (owner, member):
            assert page.get_attribute(f"#msg-{reply_id}", "data-status") == "streaming"

        # Over HTTP, on both workers: the page, the sharing page, both exports, the reply's SSE
        # events (from the start and from an offset) are all 404.
        for url in (owner_url, member_url):
            assert outsider.goto(url + path).status == 404
            for target in (
                f"{path}/sharing",
                f"{path}/export.md",
                f"{path}/export.json",
                f"{path}/room",
                f"/streaming-demo/replies/{reply_id}/events",
                f"/streaming-demo/replies/{reply_id}/events?after=3",
            ):
                response = outsider.request.get(url + target, max_redirects=0)
                assert response.status == 404, (target, response.status)
                assert "What should we see" not in response.text()

        # The owner turns the invite link off on the sharing page (another tab, the chat page
        # streams on); the outsider who got hold of the link is refused by it.
        sharing = owner_context.new_page()
        sharing.goto(owner_url + path + "/sharing")
        invite_url = sharing.input_value("#invite-url")
        assert "/join/" in invite_url
        sharing.click("button[value=turn_off]")
        sharing.wait_for_selector("text=No invite link is on")
        response = outsider.goto(invite_url)
        assert response.status == 404
        assert "This invite link does not work" in outsider.text_content("h1")
        assert outsider.goto(member_url + path).status == 404  # still not a member

        # The reply streams to its end on both members' pages, the same text.
        selector = f'#msg-{reply_id}[data-status="complete"] .markdown'
        owner.wait_for_selector(selector, timeout=30000)
        member.wait_for_selector(selector, timeout=30000)
        assert _reply_text(owner, selector) == _reply_text(member, selector)
        assert owner.query_selector(f"#msg-{reply_id} .badge-stopped") is None
    finally:
        for context in (owner_context, member_context, outsider_context):
            context.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_member_removed_mid_reply_sees_it_end_and_then_a_404(browser, two_workers, transport):
    (owner_url, owner_key), (member_url, member_key) = two_workers["owner"], two_workers["member"]
    path = f"/streaming-demo/c/{two_workers[f'removal_{transport}']}"
    owner_context, owner = _page(browser, owner_url, owner_key)
    member_context, member = _page(browser, member_url, member_key)
    try:
        owner.goto(owner_url + path)
        owner.wait_for_selector("#connection-state[data-state=connected]")
        # The member's page on the WebSocket, or on the SSE fallback (its room stream).
        member.goto(member_url + path + ("?transport=sse" if transport == "sse" else ""))
        member.wait_for_selector(
            f"#connection-state[data-state={'connected' if transport == 'ws' else 'sse'}]"
        )
        owner.wait_for_selector("#room-presence .presence-chip >> nth=1", timeout=5000)
        sharing = owner_context.new_page()  # the owner's sharing page, in another tab
        sharing.goto(owner_url + path + "/sharing")

        owner.fill("#message-input", "Plan a weekend in Porto for two")
        owner.keyboard.press("Enter")
        reply_id = _streaming_reply(owner)
        member.wait_for_selector(
            f'#msg-{reply_id}[data-status="streaming"] .msg-text span[data-seq] >> nth=2',
            state="attached",
        )

        assert member.locator("#messages > article").count() == 2  # each bubble once

        removed_at = time.monotonic()
        sharing.click("button[aria-label='Remove bo']")
        # Within 2 s the member's page shows the reply ended, not an endless cursor: nothing
        # streams there any more, no cursor blinks, no Stop is offered, and it says why.
        member.wait_for_selector('[data-status="streaming"]', state="detached", timeout=2000)
        assert time.monotonic() - removed_at < 2
        ended = member.locator(f"#msg-{reply_id}")
        assert ended.get_attribute("data-status") == "cut-off"
        assert ended.locator(".badge").inner_text() == "Cut off"
        assert ended.locator(".cursor").count() == 0
        assert not member.is_visible("#stop-button")
        assert "no longer a member" in member.text_content("#composer-error")
        assert member.text_content("#connection-state") == "Removed from this conversation"
        cut_off_text = ended.locator(".markdown").inner_text()
        assert cut_off_text.strip()  # what the member had is kept
        sharing.wait_for_selector("button[aria-label='Remove bo']", state="detached")

        # The owner's page streams on to the end; nothing more reached the member's page, and
        # the member's reload is a 404.
        finished = f'#msg-{reply_id}[data-status="complete"] .markdown'
        owner.wait_for_selector(finished, timeout=30000)
        assert owner.query_selector(f"#msg-{reply_id} .badge-stopped") is None
        assert len(_reply_text(owner, finished)) > len(cut_off_text)
        assert ended.locator(".markdown").inner_text() == cut_off_text
        assert member.reload().status == 404
    finally:
        owner_context.close()
        member_context.close()


# Two screenshots side by side in one picture, each under its caption.
SIDE_BY_SIDE = """<!doctype html><html><head><style>
  body { margin: 0; padding: 24px; display: flex; gap: 24px; background: #dfe4ea;
         font: 600 20px system-ui, sans-serif; color: #1f2937; }
  figure { margin: 0; }
  figcaption { margin: 0 0 10px 4px; }
  figcaption span { font-weight: 400; color: #4b5563; }
  img { display: block; width: 1280px; border: 1px solid #b8c0ca; border-radius: 8px;
        box-shadow: 0 6px 20px rgb(0 0 0 / 18%); }
</style></head><body>FIGURES</body></html>"""


def _side_by_side(browser, owner, member, target: Path) -> None:
    """The owner's and the member's pages at one moment, side by side: a reply streaming to
    both, who is here, and each seeing the other type."""
    owner.fill("#message-input", "Which viewpoints are worth the climb?")
    owner.keyboard.press("Enter")
    for page in (owner, member):
        page.wait_for_selector(
            '[data-status="streaming"] .msg-text span[data-seq] >> nth=12', state="attached"
        )
    member.click("#message-input")
    member.keyboard.type("Miradouro da Graça at sunset?")
    owner.wait_for_selector("#room-typing:has-text('Bo Berg is typing')", timeout=3000)
    owner.click("#message-input")
    owner.keyboard.type("Yes, and")
    member.wait_for_selector("#room-typing:has-text('Ana Lima is typing')", timeout=3000)
    shots = [page.screenshot(animations="disabled") for page in (owner, member)]
    figures = "".join(
        f"<figure><figcaption>{who} <span>· {where}</span></figcaption>"
        f'<img src="data:image/png;base64,{base64.b64encode(shot).decode()}"></figure>'
        for who, where, shot in zip(
            ("Ana Lima, the owner", "Bo Berg, a member"),
            ("Daphne worker one", "Daphne worker two"),
            shots,
            strict=True,
        )
    )
    context = browser.new_context(viewport={"width": 2 * 1282 + 3 * 24, "height": 900})
    try:
        page = context.new_page()
        page.set_content(SIDE_BY_SIDE.replace("FIGURES", figures))
        page.screenshot(path=str(target), full_page=True)
    finally:
        context.close()
    # The reply ends on both pages before the other screenshots, and the composers are empty.
    for page in (owner, member):
        page.fill("#message-input", "")
        page.wait_for_selector('[data-status="streaming"]', state="detached", timeout=30000)
