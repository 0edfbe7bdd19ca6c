"""A read-only snapshot link (`/s/<token>`) in Chromium: the owner publishes it from the
conversation's Share… page, a browser with no cookies reads it (not indexed), and it is a 404
once revoked on /settings/shares and once past its expiry."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

# The owner's session, made in the server's database.
SETUP = """
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
ana = get_user_model().objects.create_user("ana", password="x", first_name="Ana")
s = SessionStore(); s[SESSION_KEY] = str(ana.pk)
s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
s[HASH_SESSION_KEY] = ana.get_session_auth_hash(); s.create(); print(s.session_key)
"""

# A link past its expiry: its `expires_at` moved a minute into the past.
EXPIRE = """
from datetime import timedelta
from django.utils import timezone
from chat.models import ConversationShare
assert ConversationShare.objects.filter(token={token!r}).update(
    expires_at=timezone.now() - timedelta(minutes=1)) == 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, app_env, migrate, daphne, manage_shell):
    data = tmp_path_factory.mktemp("shares")
    env = app_env(data, CHAT_DEMO_TOKENS_PER_SECOND="0")
    migrate(env)
    session_key = manage_shell(env, SETUP).splitlines()[-1]
    with daphne(env, data / "server.log") as url:
        yield {"url": url, "env": env, "owner": session_key}


def _open_anonymously(browser, url: str):
    """`url` in a fresh context: no cookies, nobody signed in. (response, page text, robots)"""
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(url)
        robots = page.get_attribute("meta[name=robots]", "content") if response.ok else None
        return response.status, page.inner_text("body"), response.headers, robots
    finally:
        context.close()


def _publish(page, *, expiry: str = "") -> str:
    """Publish from the Share… page it shows; the link it then offers."""
    page.select_option("#share-expiry", expiry)
    page.click("button[value=publish]")
    page.wait_for_selector("#share-url")
    return page.input_value("#share-url")


def test_a_snapshot_link_opens_without_an_account_until_revoked_or_expired(
    browser, server, manage_shell
):
    url, env = server["url"], server["env"]
    owner_context = browser.new_context(viewport={"width": 1280, "height": 800})
    owner_context.add_cookies([{"name": "sessionid", "value": server["owner"], "url": url}])
    owner = owner_context.new_page()
    try:
        owner.goto(url + "/streaming-demo")
        owner.wait_for_selector("#connection-state[data-state=connected]")
        owner.fill("#message-input", "Which tram goes to Belém?")
        owner.keyboard.press("Enter")
        owner.wait_for_selector('[data-role="assistant"][data-status="complete"] .markdown')
        reply_opening = owner.inner_text('[data-role="assistant"] .markdown p >> nth=0')

        # Published from the conversation's ⋯ menu, Share…
        owner.click("#conversation-actions summary")
        owner.click("text=Share…")
        owner.wait_for_url("**/sharing")
        sharing_url = owner.url
        share_url = _publish(owner)
        assert "/s/" in share_url

        # Read with no account: the snapshot's text, and never indexed.
        status, text, headers, robots = _open_anonymously(browser, share_url)
        assert status == 200
        assert "Which tram goes to Belém?" in text and reply_opening in text
        assert "Sign in to continue it" in text
        assert "noindex" in robots and "noindex" in headers["x-robots-tag"]

        # Revoked on /settings/shares: a 404, still not indexed.
        owner.goto(url + "/settings/shares")
        owner.click("button.revoke")
        owner.wait_for_selector(".badge:has-text('Revoked')")
        status, text, headers, _ = _open_anonymously(browser, share_url)
        assert status == 404 and "This link does not work" in text
        assert "Which tram" not in text
        assert "noindex" in headers["x-robots-tag"]

        # Published again, to expire in a day: a new link, which opens; moved past its expiry
        # in the database, it is a 404 and the owner's list says Expired.
        owner.goto(sharing_url)
        expiring_url = _publish(owner, expiry="1d")
        assert expiring_url != share_url
        assert _open_anonymously(browser, expiring_url)[0] == 200
        manage_shell(env, EXPIRE.format(token=expiring_url.rsplit("/", 1)[1]))
        status, text, headers, _ = _open_anonymously(browser, expiring_url)
        assert status == 404 and "This link does not work" in text
        assert "noindex" in headers["x-robots-tag"]
        owner.goto(url + "/settings/shares")
        assert owner.locator(".badge:has-text('Expired')").count() == 1
        assert owner.locator(".badge:has-text('Revoked')").count() == 1
    finally:
        owner_context.close()
