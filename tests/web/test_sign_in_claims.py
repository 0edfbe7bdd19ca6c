"""Signing in or up keeps a visitor's conversations, and signing out forgets the visitor — proven
through the real server, which imports only what production imports. (The receivers once lived
in a module only tests imported: the test process had them, the server did not.)"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

PASSWORD = "a-long-enough-password-42"
CONVERSATION_URL = re.compile(r"/streaming-demo/c/([0-9a-f-]{36})")


def _submit(browser, url: str, fields: dict[str, str]) -> tuple[int, str, str]:
    """A form POST as a browser without JavaScript sends it; returns status, final URL, body."""
    data = {"csrfmiddlewaretoken": browser.cookie("csrftoken"), **fields}
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode())
    try:
        with browser.opener.open(request, timeout=30) as response:
            return response.status, response.url, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, url, error.read().decode()


def _status(browser, url: str) -> int:
    try:
        with browser.opener.open(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _chat_anonymously(browser, base: str, text: str) -> str:
    browser.get(f"{base}/streaming-demo")
    status, final_url, body = _submit(
        browser, f"{base}/streaming-demo/messages", {"message": text, "model": "demo:demo"}
    )
    assert status == 200, body[:500]
    match = CONVERSATION_URL.search(final_url)
    assert match, final_url
    return match.group(1)


@pytest.fixture
def server(tmp_path: Path, app_env, migrate, daphne):
    env = app_env(tmp_path, CHAT_SIGNUP="true", CHAT_DEMO_TOKENS_PER_SECOND="0")
    migrate(env)
    with daphne(env, tmp_path / "server.log") as url:
        yield url, env


def _visitor_cookie(browser) -> str | None:
    return next((c.value for c in browser.jar if c.name == "chat_visitor"), None)


def test_signing_up_keeps_the_conversation_and_signing_out_forgets_the_visitor(
    server, browser_class
):
    base, _env = server
    browser = browser_class()
    conversation_id = _chat_anonymously(browser, base, "remember me after sign-up")
    anonymous_id = _visitor_cookie(browser)
    assert anonymous_id

    browser.get(f"{base}/accounts/signup/")
    status, _url, body = _submit(
        browser,
        f"{base}/accounts/signup/",
        {"username": "grace", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert status == 200, body[:500]

    # The conversation is the account's now: its page opens and the sidebar lists it.
    assert _status(browser, f"{base}/streaming-demo/c/{conversation_id}") == 200
    assert conversation_id in browser.get(f"{base}/streaming-demo")

    browser.get(f"{base}/streaming-demo")
    status, _url, _body = _submit(browser, f"{base}/accounts/logout/", {})
    assert status == 200

    # Whoever uses this browser next, anonymously, sees none of it.
    assert _visitor_cookie(browser) != anonymous_id
    assert _status(browser, f"{base}/streaming-demo/c/{conversation_id}") == 404
    assert conversation_id not in browser.get(f"{base}/streaming-demo")


def test_signing_in_keeps_the_conversation(server, browser_class, repo):
    base, env = server
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from django.contrib.auth.models import User; "
         f"User.objects.create_user('ada', password='{PASSWORD}')"],
        cwd=repo, env=env, check=True, timeout=60,
    )  # fmt: skip
    browser = browser_class()
    conversation_id = _chat_anonymously(browser, base, "remember me after sign-in")
    anonymous_id = _visitor_cookie(browser)

    browser.get(f"{base}/accounts/login/")
    status, _url, body = _submit(
        browser, f"{base}/accounts/login/", {"username": "ada", "password": PASSWORD}
    )
    assert status == 200, body[:500]

    assert _status(browser, f"{base}/streaming-demo/c/{conversation_id}") == 200
    # The visitor id did its job: it is not carried into the account's session.
    assert _visitor_cookie(browser) != anonymous_id

    # Another anonymous browser cannot reach it.
    stranger = browser_class()
    stranger.get(f"{base}/streaming-demo")
    assert _status(stranger, f"{base}/streaming-demo/c/{conversation_id}") == 404
