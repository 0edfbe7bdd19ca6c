"""Default instructions in Chromium: a signed-in person saves them on /settings/instructions
(reached from the chat's sidebar), a new chat's System toggle is marked and its box holds them,
the first send reaches the model with them as the system prompt, and a chat already started
keeps its own prompt when they change."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# A signed-in person's session, made in the server's database.
SETUP = """
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
ana = get_user_model().objects.create_user("ana", password="x")
s = SessionStore(); s[SESSION_KEY] = str(ana.pk)
s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
s[HASH_SESSION_KEY] = ana.get_session_auth_hash(); s.create(); print(s.session_key)
"""

ASSISTANT = '#messages [data-role="assistant"]'


@pytest.fixture(scope="module")
def served(serving_with_upstream, manage_shell) -> Any:
    found: dict[str, str] = {}

    def prepare(env: dict[str, str]) -> None:
        found["session"] = manage_shell(env, SETUP).splitlines()[-1]

    with serving_with_upstream("chatsite-e2e-instructions-", prepare=prepare) as (url, upstream):
        yield url, upstream, found["session"]


def _signed_in_page(new_page: Any, served: Any, **options: Any) -> Any:
    url, _, session = served
    page = new_page(base_url=url, **options)
    page.context.add_cookies([{"name": "sessionid", "value": session, "url": url}])
    return page


def _save(page: Any, text: str) -> None:
    page.fill("#default-instructions", text)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("status").filter(has_text="Saved.").wait_for()


def test_default_instructions_start_each_new_chat_and_leave_started_ones_alone(
    new_page: Any, served: Any
) -> None:
    _, upstream, _ = served
    page = _signed_in_page(new_page, served)
    page.goto("/streaming-demo")
    page.get_by_role("link", name="Instructions").click()
    page.wait_for_url("**/settings/instructions")
    _save(page, "Answer like a pirate.")

    page.get_by_role("link", name="← Back to chat").click()
    page.get_by_text("Connected · WebSocket").wait_for()
    toggle = page.locator(".system-prompt summary")
    assert toggle.locator(".prompt-set").is_visible()
    assert toggle.get_attribute("title") == "Answer like a pirate."
    toggle.click()
    assert page.input_value("#system-prompt-input") == "Answer like a pirate."

    upstream.script(text="Arr, hello.")
    page.fill("#message-input", "Hello")
    page.keyboard.press("Enter")
    page.locator(f'{ASSISTANT}[data-status="complete"]').wait_for()
    assert upstream.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "Answer like a pirate.",
    }
    page.wait_for_url("**/streaming-demo/c/*")
    started = page.url

    # New instructions: the chat already started keeps its prompt; a new one takes them.
    page.goto("/settings/instructions")
    assert page.input_value("#default-instructions") == "Answer like a pirate."
    _save(page, "Be brief.")
    page.goto(started)
    assert page.input_value("#system-prompt-input") == "Answer like a pirate."
    page.goto("/streaming-demo")
    assert page.input_value("#system-prompt-input") == "Be brief."

    # Changed for one chat only: the box is the chat's own.
    page.locator(".system-prompt summary").click()
    page.fill("#system-prompt-input", "")
    assert page.locator(".system-prompt .prompt-set").is_hidden()
    upstream.script(text="Plain hello.")
    page.fill("#message-input", "Hi again")
    page.keyboard.press("Enter")
    page.locator(f'{ASSISTANT}[data-status="complete"]').wait_for()
    assert upstream.requests[-1].body["messages"] == [{"role": "user", "content": "Hi again"}]


def test_too_long_instructions_are_refused_in_words(
    new_page: Any, served: Any, page_errors
) -> None:
    page_errors.allow(r"status of 400")  # the refusal, on purpose
    page = _signed_in_page(new_page, served)
    page.goto("/settings/instructions")
    page.fill("#default-instructions", "x" * 4001)
    page.get_by_role("button", name="Save").click()

    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "4,001 characters long; the limit is 4,000" in alert.inner_text()
    assert page.input_value("#default-instructions") == "x" * 4001


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_the_instructions_page_fits_and_has_no_axe_violations(
    new_page: Any, served: Any, run_axe, describe_violations, artifacts, scheme: str, width: int
) -> None:
    page = _signed_in_page(
        new_page, served, color_scheme=scheme, viewport={"width": width, "height": 800}
    )
    page.goto("/settings/instructions")
    page.fill("#default-instructions", "I teach maths. Answer with worked examples.")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("status").filter(has_text="Saved.").wait_for()

    violations = run_axe(page)
    assert not violations, describe_violations(violations)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator("#default-instructions").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"instructions-{scheme}-{width}.png"), full_page=True)


def test_anonymous_visitors_are_asked_to_sign_in(new_page: Any, served: Any) -> None:
    url, _, _ = served
    page = new_page(base_url=url)
    page.goto("/settings/instructions")

    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/accounts/login/?next=/settings/instructions")
