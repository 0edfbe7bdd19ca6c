"""Safe defaults for a self-hosted site (issue 22.11): once a real provider is configured the
offline demo leaves the model picker (CHAT_DEMO_ENABLED brings it back); anonymous use of priced
models is capped per visitor (CHAT_ANONYMOUS_DAILY_CAP_USD) and for all anonymous visitors
together (CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD), refused in words; the operator is told at start-up
in the server's log; and a provider error a visitor sees names no server setting, while the log
keeps it."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from chat import providers
from chat.conversations import errors
from chat.conversations.reads import Visitor
from chat.costs.budgets import send_budget
from chat.models import Conversation, Message, PriceOverride, SpendingCap
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_OPTIONS = {"OPENAI_API_KEY": "sk-test", "OPENAI_MODELS": "gpt-4.1-mini"}


def _picker(page: str) -> list[str]:
    select = re.search(r'<select id="model"[^>]*>(.*?)</select>', page, re.S)
    assert select, "the page has no model picker"
    return re.findall(r"<option[^>]*>([^<]*)</option>", select.group(1))


# --- The demo model -----------------------------------------------------------------------------


@pytest.fixture
def demo_setting_unset(settings):
    settings.CHAT_DEMO_ENABLED = None  # as when the variable is not set
    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = ""
    return settings


def test_without_a_provider_the_demo_is_offered(demo_setting_unset, client):
    assert [option.value for option in providers.available_models()] == ["demo:demo"]
    assert _picker(client.get("/streaming-demo").content.decode()) == ["Demo (offline)"]


@pytest.mark.parametrize("key", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
def test_a_configured_provider_hides_the_demo(demo_setting_unset, client, key):
    setattr(demo_setting_unset, key, "sk-real")
    demo_setting_unset.OPENAI_MODELS = ["gpt-4.1-mini"]
    demo_setting_unset.ANTHROPIC_MODELS = ["claude-haiku-4-5"]

    shown = _picker(client.get("/streaming-demo").content.decode())

    assert "Demo (offline)" not in shown and len(shown) == 1
    assert providers.resolve_model("demo:demo") is None


def test_chat_demo_enabled_brings_the_demo_back_or_turns_it_off(demo_setting_unset, client):
    demo_setting_unset.OPENAI_API_KEY = "sk-real"
    demo_setting_unset.OPENAI_MODELS = ["gpt-4.1-mini"]
    demo_setting_unset.CHAT_DEMO_ENABLED = True
    assert _picker(client.get("/streaming-demo").content.decode()) == [
        "Demo (offline)",
        "gpt-4.1-mini · OpenAI",
    ]

    demo_setting_unset.OPENAI_API_KEY = ""
    demo_setting_unset.CHAT_DEMO_ENABLED = False
    assert _picker(client.get("/streaming-demo").content.decode()) == ["No model configured"]


# --- The anonymous caps -------------------------------------------------------------------------


@pytest.fixture
def billed_demo():
    """The demo model at a price, so anonymous replies to it spend the caps."""
    return PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=1_000_000, output_per_mtok=1_000_000
    )


def _anonymous(visitor_id: str) -> Visitor:
    return Visitor(
        user=AnonymousUser(), visitor_id=visitor_id, client_ip=f"10.0.0.{len(visitor_id)}"
    )


def _spent(visitor: Visitor, microusd: int, *, days_ago: int = 0) -> None:
    conversation = Conversation.objects.create(
        user=visitor.user if visitor.is_authenticated else None,
        visitor_id="" if visitor.is_authenticated else visitor.visitor_id,
        provider="demo",
        model="demo",
    )
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.COMPLETE,
        ended_reason=Message.EndedReason.COMPLETED,
        content="Paid for.",
        cost_microusd=microusd,
        day=timezone.localdate() - timedelta(days=days_ago),
    )


def _send(visitor: Visitor) -> services.ReplyStarted:
    return services.reply_start(
        visitor=visitor, conversation_id=None, text="Hello", model_choice="demo:demo"
    )


def test_each_anonymous_visitor_has_a_daily_cap_by_default(settings, billed_demo):
    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = Decimal("0.25")
    ann, bob = _anonymous("ann"), _anonymous("bob-visitor")
    _spent(ann, 250_000)
    _spent(bob, 249_000)
    _spent(bob, 900_000, days_ago=1)  # yesterday's does not count

    with pytest.raises(errors.SpendingCapReached) as refused:
        _send(ann)
    assert refused.value.message == (
        "You have reached your daily spending limit of $0.25. It resets at midnight (UTC)."
    )
    assert _send(bob).assistant_message.status == Message.Status.STREAMING


def test_all_anonymous_visitors_share_a_daily_total_by_default(settings, billed_demo):
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = Decimal("5")
    for n in range(5):
        _spent(_anonymous(f"visitor-{n}"), 1_000_000)
    ada = User.objects.create_user("ada")

    with pytest.raises(errors.SpendingCapReached) as refused:
        _send(_anonymous("newcomer"))

    assert refused.value.status == 429
    assert refused.value.message == (
        "Anonymous use of this chat has reached today's limit of $5.00 for all visitors "
        "together. It resets at midnight (UTC). Sign in to go on."
    )
    assert "CHAT_" not in refused.value.message
    # Signed-in people are not anonymous: the shared cap is not theirs.
    signed_in = Visitor(user=ada, visitor_id="", client_ip="10.0.0.9")
    assert _send(signed_in).assistant_message.status == Message.Status.STREAMING


def test_what_is_left_of_the_total_bounds_the_reply(settings, billed_demo):
    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = Decimal("1")
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = Decimal("0.50")
    _spent(_anonymous("someone-else"), 490_000)

    budget = send_budget(user_id=None, visitor_id="newcomer", provider="demo", model="demo")

    assert budget.refusal is None and budget.guard is not None
    assert budget.guard.remaining_microusd == 10_000
    assert budget.guard.message == (
        "This reply was stopped because anonymous use of this chat reached today's limit of "
        "$0.50 for all visitors together."
    )


def test_a_cap_staff_set_for_anonymous_visitors_replaces_the_default(settings, billed_demo):
    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = Decimal("0.25")
    SpendingCap.objects.create(scope=SpendingCap.Scope.ANONYMOUS, daily_cap=1_000_000)
    ann = _anonymous("ann")
    _spent(ann, 500_000)

    assert _send(ann).assistant_message.status == Message.Status.STREAMING


def test_none_turns_the_caps_off_and_free_models_are_never_capped(settings, billed_demo):
    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = None
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = None
    ann = _anonymous("ann")
    _spent(ann, 50_000_000)
    assert _send(ann).assistant_message.status == Message.Status.STREAMING

    settings.CHAT_ANONYMOUS_DAILY_CAP_USD = Decimal("0.01")
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = Decimal("0.01")
    billed_demo.delete()  # free (no price): nothing to cap
    Message.objects.filter(status=Message.Status.STREAMING).update(
        status=Message.Status.COMPLETE, ended_reason="completed"
    )
    assert _send(ann).assistant_message.status == Message.Status.STREAMING


def test_a_refused_anonymous_send_over_http_is_a_429_in_words(settings, billed_demo, client):
    settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = Decimal("0.10")
    _spent(_anonymous("earlier"), 100_000)
    client.get("/streaming-demo")

    response = client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "Hi", "model": "demo:demo"},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 429
    assert "reached today&#x27;s limit of $0.10 for all visitors together" in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("value", "wording"),
    [
        ("lots", "must be an amount in dollars (e.g. 0.25) or `none`"),
        ("-1", "must not be negative"),
    ],
)
def test_a_bad_cap_value_stops_the_start_with_its_name(tmp_path, app_env, repo, value, wording):
    env = app_env(tmp_path, DJANGO_SETTINGS_MODULE="chatsite.settings")
    env["CHAT_ANONYMOUS_DAILY_CAP_USD"] = value
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"CHAT_ANONYMOUS_DAILY_CAP_USD {wording}" in result.stderr


# --- What the operator is told, in the real server's log ---------------------------------------


def _served_log(tmp_path, app_env, migrate, daphne, unset=(), **settings: str) -> str:
    """Start the server the suite starts, with `settings` and the variables in `unset` left
    out of its environment (their defaults apply); its log once it answers."""
    env = app_env(tmp_path, **settings)
    for name in unset:
        env.pop(name, None)
    migrate(env)
    log_path = tmp_path / "server.log"
    with daphne(env, log_path):
        pass
    return log_path.read_text()


DEFAULT_CAPS = ("CHAT_ANONYMOUS_DAILY_CAP_USD", "CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD")


def test_the_operator_is_told_how_anonymous_use_is_capped(tmp_path, app_env, migrate, daphne):
    log = _served_log(tmp_path, app_env, migrate, daphne, unset=DEFAULT_CAPS, **OPENAI_OPTIONS)

    assert (
        "Anonymous use of paid models (gpt-4.1-mini · OpenAI) is capped at $0.25 per visitor "
        "per day and $5.00 a day for all of them together." in log
    )
    assert "CHAT_ANONYMOUS_DAILY_CAP_USD and CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD set them" in log


def test_the_operator_is_warned_when_anonymous_use_is_not_capped(
    tmp_path, app_env, migrate, daphne
):
    log = _served_log(tmp_path, app_env, migrate, daphne, **OPENAI_OPTIONS)  # the suite's: none

    assert "WARNING" in log
    assert (
        "Anonymous visitors can use paid models (gpt-4.1-mini · OpenAI) with no spending cap"
        in (log)
    )


def test_no_notice_without_a_paid_model_or_with_sign_in_required(
    tmp_path, app_env, migrate, daphne
):
    assert "Anonymous" not in _served_log(
        tmp_path / "a", app_env, migrate, daphne, unset=DEFAULT_CAPS
    )
    log = _served_log(
        tmp_path / "b",
        app_env,
        migrate,
        daphne,
        unset=DEFAULT_CAPS,
        CHAT_REQUIRE_LOGIN="true",
        **OPENAI_OPTIONS,
    )
    assert "Anonymous" not in log


def test_a_served_site_with_a_key_shows_its_real_models_alone(
    tmp_path, app_env, migrate, daphne, browser_class
):
    env = app_env(tmp_path, **OPENAI_OPTIONS)
    env.pop("CHAT_DEMO_ENABLED")
    migrate(env)
    with daphne(env, tmp_path / "server.log") as url:
        page = browser_class().get(f"{url}/streaming-demo")
    assert _picker(page) == ["gpt-4.1-mini · OpenAI"]


# --- Provider errors: words for the visitor, the setting for the operator -----------------------


async def test_a_rejected_key_names_no_setting_to_the_visitor_but_logs_it(
    visitor, openai_upstream, run_job, caplog
):
    openai_upstream.script(status=401, error_message="Incorrect API key provided: sk-te***")
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Hi", model_choice="openai:gpt-4.1-mini"
    )

    with caplog.at_level(logging.ERROR, logger="chat"):
        message = await run_job(started.assistant_message.pk)

    assert message.ended_reason == Message.EndedReason.PROVIDER_ERROR
    assert message.error_text == (
        "The OpenAI API key was rejected (401). The site's operator has to fix this."
    )
    assert "OPENAI" not in message.error_text and "server" not in message.error_text
    assert "check OPENAI_API_KEY on the server" in caplog.text
    assert "Incorrect API key provided" in caplog.text


def test_a_served_rejected_key_shows_words_and_logs_the_setting(
    tmp_path, app_env, migrate, daphne, fake_upstream, browser_class
):
    fake_upstream.script(status=401, error_message="Incorrect API key provided: sk-te***")
    env = app_env(
        tmp_path,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        CHAT_PROVIDER_MAX_RETRIES="0",
        CHAT_DEFAULT_MODEL="openai:gpt-4.1-mini",
        **OPENAI_OPTIONS,
    )
    migrate(env)
    log_path = tmp_path / "server.log"
    with daphne(env, log_path) as url:
        browser = browser_class()
        browser.get(f"{url}/streaming-demo")
        # The form as a browser without JavaScript posts it: the answer is the finished reply.
        request = urllib.request.Request(
            f"{url}/streaming-demo/messages",
            data=urllib.parse.urlencode(
                {
                    "action": "send",
                    "message": "Hello",
                    "model": "openai:gpt-4.1-mini",
                    "csrfmiddlewaretoken": browser.cookie("csrftoken"),
                }
            ).encode(),
        )
        with browser.opener.open(request, timeout=30) as response:
            page = response.read().decode()
        deadline = time.monotonic() + 10
        while "check OPENAI_API_KEY" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)

    assert (
        "The OpenAI API key was rejected (401). The site&#x27;s operator has to fix this." in page
    )
    assert "OPENAI_API_KEY" not in page
    assert "check OPENAI_API_KEY on the server" in log_path.read_text()
