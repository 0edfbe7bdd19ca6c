"""The owner's presence switch in two browsers on two Daphne workers sharing Redis: the owner
flips "Show who is here and who is typing" on the sharing page, and both chat pages follow at
once — the chips go and "Presence is off" shows, typing is neither sent nor shown; flipped back
on, the chips come back without a reload."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(240)]

SWITCH = "Show who is here and who is typing"

# Every text the owner's typing line shows, from now on (an OOB swap replaces the element).
WATCH_TYPING = """() => {
  window.typingSeen = [];
  new MutationObserver(() => {
    const text = document.getElementById("room-typing")?.textContent;
    if (text) window.typingSeen.push(text);
  }).observe(document.querySelector(".room-lines"), {
    subtree: true, childList: true, characterData: true,
  });
}"""


def _context(browser, url: str, session_key: str):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": "sessionid", "value": session_key, "url": url}])
    return context


def _chips(page) -> int:
    return page.locator("#room-presence .presence-chip").count()


def test_the_owner_switches_presence_off_and_on_and_both_pages_follow(browser, room_on_two_workers):
    (owner_url, owner_key), (member_url, member_key) = (
        room_on_two_workers["owner"],
        room_on_two_workers["member"],
    )
    chat = f"/streaming-demo/c/{room_on_two_workers['conversation']}"
    owner_context = _context(browser, owner_url, owner_key)
    member_context = _context(browser, member_url, member_key)
    try:
        owner, sharing = owner_context.new_page(), owner_context.new_page()
        member = member_context.new_page()
        # What the member's page sends on its socket, from the start.
        sent: list[str] = []
        member.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
        for page, url in ((owner, owner_url), (member, member_url)):
            page.goto(url + chat)
            page.wait_for_selector("#connection-state[data-state=connected]")
        for page in (owner, member):
            page.wait_for_selector("#room-presence .presence-chip >> nth=1")
            assert page.text_content("#presence-state") == ""

        # The owner's sharing page, in another tab: the switch saves on change (no Save button).
        sharing.goto(owner_url + chat + "/sharing")
        switch = sharing.get_by_role("switch", name=SWITCH)
        assert switch.is_checked()
        assert sharing.locator("[data-without-js]").is_hidden()
        switch.uncheck()
        sharing.wait_for_selector("#presence-switch-status:has-text('Off: nobody sees')")

        # Both pages, on both workers: the chips go, the header says so.
        for page in (owner, member):
            page.wait_for_selector("#presence-state:text-is('Presence is off')")
            assert _chips(page) == 0
        assert "turned off who is here" in member.text_content("#room-announcer")

        # Typing is neither sent nor shown: the member types and sends; by the time the owner's
        # page shows the message, it has shown no typing, and the member's page sent none.
        owner.evaluate(WATCH_TYPING)
        sent_before = len(sent)
        member.click("#message-input")
        member.keyboard.type("Anyone here?")
        member.keyboard.press("Enter")
        owner.wait_for_selector(".msg-user:has-text('Anyone here?')")
        assert owner.evaluate("window.typingSeen") == []
        assert [f for f in sent[sent_before:] if '"typing"' in f] == []
        assert any('"send"' in f or "Anyone here?" in f for f in sent[sent_before:])

        # On again: both pages show both people without a reload, and typing is back.
        switch.check()
        sharing.wait_for_selector("#presence-switch-status:has-text('On: everyone here')")
        for page in (owner, member):
            page.wait_for_selector("#room-presence .presence-chip >> nth=1")
            page.wait_for_selector("#presence-state:text-is('')", state="attached")
            assert _chips(page) == 2
        member.keyboard.type("Back again")
        owner.wait_for_selector("#room-typing:has-text('Bo Berg is typing')")
    finally:
        owner_context.close()
        member_context.close()
