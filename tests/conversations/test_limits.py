"""Limits that a new session does not reset (issue 7, part 3): sends counted per person and per
IP on every way to start a reply, streaming replies capped, anonymous caps per IP, refusals that
say when to try again, and a cache outage that refuses clearly."""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import AsyncClient, Client
from django.utils import timezone

from chat.conversations import errors, limits
from chat.conversations.limits import client_ip_from, client_key
from chat.conversations.reads import Visitor
from chat.models import Conversation, Message, SpendingCap
from chat.replies import start as services
from chatsite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def fresh_visitor(ip: str = "203.0.113.7") -> Visitor:
    return Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex, client_ip=ip)


# --- Where a request comes from --------------------------------------------------------------


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(settings):
    settings.CHAT_TRUSTED_PROXIES = []
    assert client_ip_from("198.51.100.1", "1.2.3.4") == "198.51.100.1"


def test_trusted_proxy_gives_the_nearest_untrusted_hop(settings):
    settings.CHAT_TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    # The client can write anything at the left; only what our proxies appended is believed.
    assert client_ip_from("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.1.2.3") == "198.51.100.9"
    assert client_ip_from("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert client_ip_from("127.0.0.1", None) == "127.0.0.1"


def test_client_key_is_a_keyed_hash_not_the_address():
    key = client_key("203.0.113.7")
    assert key and "203.0.113.7" not in key and len(key) == 32
    assert key == client_key("203.0.113.7") != client_key("203.0.113.8")


# --- Send rates ---------------------------------------------------------------------------------


def test_fresh_sessions_from_one_ip_share_its_rate_limit(settings):
    settings.CHAT_RATE_LIMIT = "20/m"
    settings.CHAT_IP_RATE_LIMIT = "5/m"
    for _ in range(5):
        limits.send_check(fresh_visitor())
    with pytest.raises(errors.RateLimited, match="Wait") as refused:
        limits.send_check(fresh_visitor())
    assert refused.value.retry_after >= 1
    limits.send_check(fresh_visitor(ip="203.0.113.99"))  # another address is unaffected


def cookieless_post(ip: str, **headers) -> tuple[int, dict, str]:
    """A visitor who throws away every cookie: a fresh GET, then one send."""
    client = Client(REMOTE_ADDR=ip)
    client.get("/streaming-demo")
    response = client.post(
        "/streaming-demo/messages",
        {"message": "hello", "model": "demo:demo", "conversation": ""},
        headers=headers,
    )
    return response.status_code, response.headers, response.content.decode()


def test_fresh_session_flood_over_http_is_refused_with_429_and_retry_after(settings):
    settings.CHAT_RATE_LIMIT = "20/m"
    settings.CHAT_IP_RATE_LIMIT = "3/m"
    statuses = [cookieless_post("198.51.100.20", **HTMX)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]

    status, headers, body = cookieless_post("198.51.100.20", **HTMX)
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "too quickly" in body and "Wait" in body

    # The page without JavaScript says the same, with the same status.
    status, headers, body = cookieless_post("198.51.100.20")
    assert status == 429 and "Retry-After" in headers and "too quickly" in body
    assert Message.objects.filter(role="user").count() == 3


@pytest.fixture
def ws_connect(anonymous_session):
    async def ws_connect(ip: str) -> WebsocketCommunicator:
        cookie, _ = await anonymous_session()
        communicator = WebsocketCommunicator(
            application,
            "/ws/chat/",
            headers=[
                (b"host", b"127.0.0.1:8000"),
                (b"origin", b"http://127.0.0.1:8000"),
                (b"cookie", cookie.encode()),
            ],
        )
        communicator.scope["client"] = (ip, 50000)
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    return ws_connect


async def ws_send(communicator: WebsocketCommunicator) -> str:
    await communicator.send_to(
        text_data=json.dumps(
            {"action": "send", "message": "hi", "model": "demo:demo", "conversation": ""}
        )
    )
    return await communicator.receive_from(5)


async def test_fresh_session_flood_over_websocket_is_refused_naming_the_wait(settings, ws_connect):
    settings.CHAT_RATE_LIMIT = "20/m"
    settings.CHAT_IP_RATE_LIMIT = "2/m"
    frames = []
    for _ in range(3):
        communicator = await ws_connect("198.51.100.30")
        frames.append(await ws_send(communicator))
        await communicator.disconnect()
    assert "data-message-id" in frames[0] and "data-message-id" in frames[1]
    assert "too quickly" in frames[2] and "second" in frames[2]
    assert await Message.objects.filter(role="user").acount() == 2


# --- Replies at once ------------------------------------------------------------------------------


def test_streaming_replies_are_capped_per_person(settings):
    settings.CHAT_MAX_STREAMING_PER_PERSON = 2
    visitor = fresh_visitor()
    for _ in range(2):
        services.reply_start(
            visitor=visitor, conversation_id=None, text="go", model_choice="demo:demo"
        )
    with pytest.raises(errors.RateLimited, match="2 replies streaming"):
        services.reply_start(
            visitor=visitor, conversation_id=None, text="go", model_choice="demo:demo"
        )


def test_streaming_replies_are_capped_per_ip_across_fresh_sessions(settings):
    settings.CHAT_MAX_STREAMING_PER_IP = 3
    for _ in range(3):
        services.reply_start(
            visitor=fresh_visitor(), conversation_id=None, text="go", model_choice="demo:demo"
        )
    with pytest.raises(errors.RateLimited, match="network already has 3"):
        services.reply_start(
            visitor=fresh_visitor(), conversation_id=None, text="go", model_choice="demo:demo"
        )
    # Once one ends, there is room again.
    Message.objects.filter(status="streaming").order_by("id").first()
    Message.objects.filter(pk=Message.objects.filter(status="streaming").first().pk).update(
        status="complete"
    )
    services.reply_start(
        visitor=fresh_visitor(), conversation_id=None, text="go", model_choice="demo:demo"
    )


async def test_streaming_cap_over_http_is_a_429(settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 2  # replies stay streaming for a while
    settings.CHAT_MAX_STREAMING_PER_IP = 2
    statuses = []
    for _ in range(3):
        client = AsyncClient(REMOTE_ADDR="198.51.100.40")
        await client.get("/streaming-demo")
        response = await client.post(
            "/streaming-demo/messages",
            {"message": "hello", "model": "demo:demo", "conversation": ""},
            headers=HTMX,
        )
        statuses.append((response.status_code, response.headers.get("Retry-After")))
    assert statuses[:2] == [(200, None), (200, None)]
    assert statuses[2][0] == 429 and int(statuses[2][1]) >= 1
    for message in await sync_to_async(list)(Message.objects.streaming()):
        await services.reply_stop(
            visitor=Visitor(
                user=AnonymousUser(),
                visitor_id=(await Conversation.objects.aget(pk=message.conversation_id)).visitor_id,
            ),
            conversation_id=str(message.conversation_id),
        )


# --- Anonymous spending caps per IP -----------------------------------------------------------


def test_anonymous_spending_cap_also_counts_the_ip(settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["gpt-4.1-mini"]
    SpendingCap.objects.create(scope=SpendingCap.Scope.ANONYMOUS, daily_cap=50_000)
    spender = fresh_visitor(ip="203.0.113.50")
    conversation = Conversation.objects.create(
        visitor_id=spender.visitor_id, provider="openai", model="gpt-4.1-mini"
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="complete",
        provider="openai",
        model="gpt-4.1-mini",
        cost_microusd=60_000,
        client_key=client_key("203.0.113.50"),
        day=timezone.localdate(),
    )
    # A fresh session from the same address has no fresh allowance ...
    with pytest.raises(errors.ChatInputError, match="daily spending limit"):
        services.reply_start(
            visitor=fresh_visitor(ip="203.0.113.50"),
            conversation_id=None,
            text="more",
            model_choice="openai:gpt-4.1-mini",
        )
    # ... while someone elsewhere does.
    services.reply_start(
        visitor=fresh_visitor(ip="203.0.113.51"),
        conversation_id=None,
        text="more",
        model_choice="openai:gpt-4.1-mini",
    )


# --- A cache outage ------------------------------------------------------------------------------


@pytest.fixture
def dead_cache(settings, free_port):
    # Django's setting_changed handler drops the cache connections, so the next use reconnects.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.CHAT_RATE_LIMIT = "20/m"


def test_send_while_the_rate_limit_cache_is_down_is_a_503_not_a_500(dead_cache):
    client = Client(REMOTE_ADDR="198.51.100.60")
    client.get("/streaming-demo")
    response = client.post(
        "/streaming-demo/messages",
        {"message": "hello", "model": "demo:demo", "conversation": ""},
        headers=HTMX,
    )
    assert response.status_code == 503
    assert "briefly unavailable" in response.content.decode()
    assert response["Retry-After"]
    assert not Message.objects.exists()
