"""Default instructions (/settings/instructions): saved per person, they prefill the system
prompt of each new conversation; conversations already started keep theirs."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from chat.models import Conversation, Preferences
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/settings/instructions"


def _system_prompt_box(page: str) -> str:
    match = re.search(r'<textarea id="system-prompt-input"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, "the composer has no system prompt box"
    return html.unescape(match.group(1))


def _prompt_mark_shown(page: str) -> bool:
    match = re.search(r'<span class="prompt-set"( hidden)?>', page)
    assert match, "the System toggle has no mark"
    return match.group(1) is None


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada", password="pw-ada-123456")


@pytest.fixture
def ada_client(ada):
    client = Client()
    client.force_login(ada)
    return client


def test_saving_instructions_keeps_them_and_says_so(ada, ada_client):
    response = ada_client.post(URL, {"default_instructions": "  Answer in French.  "})

    assert response.status_code == 302
    page = ada_client.get(response["Location"]).content.decode()
    assert "Saved." in page
    assert ">Answer in French.</textarea>" in page
    assert Preferences.objects.get(user=ada).default_instructions == "Answer in French."


def test_saving_empty_instructions_clears_them(ada, ada_client):
    ada_client.post(URL, {"default_instructions": "Be brief."})
    ada_client.post(URL, {"default_instructions": "   "})

    assert Preferences.objects.get(user=ada).default_instructions == ""
    assert _system_prompt_box(ada_client.get("/streaming-demo").content.decode()) == ""


def test_too_long_instructions_are_refused_in_words_and_kept_in_the_box(settings, ada, ada_client):
    settings.CHAT_MAX_SYSTEM_PROMPT_CHARS = 50

    response = ada_client.post(URL, {"default_instructions": "x" * 60})

    page = response.content.decode()
    assert response.status_code == 400
    assert "Your instructions are 60 characters long; the limit is 50." in page
    assert 'role="alert"' in page and 'aria-invalid="true"' in page
    assert "x" * 60 in page  # what was typed is not lost
    assert not Preferences.objects.filter(user=ada).exists()


def test_the_chat_page_links_to_the_instructions(ada_client):
    page = ada_client.get("/streaming-demo").content.decode()
    assert f'href="{URL}"' in page


def test_a_new_chat_shows_the_instructions_as_its_system_prompt(ada_client):
    ada_client.post(URL, {"default_instructions": "Use <b>plain</b> words."})

    page = ada_client.get("/streaming-demo").content.decode()

    assert _system_prompt_box(page) == "Use <b>plain</b> words."
    assert _prompt_mark_shown(page)
    assert "<b>plain</b>" not in page  # escaped


def test_without_instructions_a_new_chat_has_no_system_prompt(ada_client):
    page = ada_client.get("/streaming-demo").content.decode()
    assert _system_prompt_box(page) == ""
    assert not _prompt_mark_shown(page)


async def test_a_new_chats_first_send_reaches_the_model_with_the_instructions(ada, openai_upstream):
    client = AsyncClient()
    await client.aforce_login(ada)
    await client.post(URL, {"default_instructions": "Answer like a pirate."})
    openai_upstream.script(text="Arr.")
    page = (await client.get("/streaming-demo")).content.decode()

    # The composer's form as the browser sends it (the no-JavaScript path).
    response = await client.post(
        "/streaming-demo/messages",
        {
            "action": "send",
            "message": "Hello",
            "model": "openai:gpt-4.1-mini",
            "system_prompt": _system_prompt_box(page),
            "conversation": "",
        },
    )
    await asyncio.gather(*live_jobs())

    assert response.status_code == 302
    assert openai_upstream.requests[-1].body["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
    ]
    conversation = await Conversation.objects.aget()
    assert conversation.system_prompt == "Answer like a pirate."


def test_existing_chats_keep_their_own_system_prompt(ada, ada_client):
    kept = Conversation.objects.create(user=ada, title="Old", system_prompt="Be formal.")
    bare = Conversation.objects.create(user=ada, title="Bare")

    ada_client.post(URL, {"default_instructions": "Be casual."})

    kept.refresh_from_db()
    assert kept.system_prompt == "Be formal."
    assert _system_prompt_box(ada_client.get(f"/streaming-demo/c/{kept.pk}").content.decode()) == (
        "Be formal."
    )
    bare_page = ada_client.get(f"/streaming-demo/c/{bare.pk}").content.decode()
    assert _system_prompt_box(bare_page) == ""
    assert not _prompt_mark_shown(bare_page)


def test_saving_needs_the_csrf_token(ada):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ada)

    refused = client.post(URL, {"default_instructions": "Sneaky."})
    assert refused.status_code == 403
    assert not Preferences.objects.filter(user=ada).exists()

    token = client.get(URL).cookies["csrftoken"].value
    saved = client.post(URL, {"default_instructions": "Mine.", "csrfmiddlewaretoken": token})
    assert saved.status_code == 302
    assert Preferences.objects.get(user=ada).default_instructions == "Mine."


def test_anonymous_visitors_are_asked_to_sign_in(client):
    page = client.get(URL)

    assert page.status_code == 200
    text = page.content.decode()
    assert "Sign in</a> to set yours" in text
    assert "/accounts/login/?next=/settings/instructions" in text
    assert "<textarea" not in text

    client.post(URL, {"default_instructions": "Anonymous text."})
    assert not Preferences.objects.exists()
    # Their new chats start without a system prompt.
    assert _system_prompt_box(client.get("/streaming-demo").content.decode()) == ""


def test_one_persons_instructions_are_not_anothers(ada_client):
    ada_client.post(URL, {"default_instructions": "Ada's own."})
    grace = User.objects.create_user("grace", password="pw-grace-123456")
    other = Client()
    other.force_login(grace)

    assert _system_prompt_box(other.get("/streaming-demo").content.decode()) == ""
    assert ">Ada's own.<" not in other.get(URL).content.decode()
