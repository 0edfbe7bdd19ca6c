"""/healthz, /readyz, /metrics, and the static files WhiteNoise serves, through the ASGI stack."""

from __future__ import annotations

import asyncio

import pytest
from django.test import AsyncClient
from prometheus_client import REGISTRY

from chat.models import Message
from chat.providers.demo import demo_reply, tokenize
from chat.replies import start as services
from chat.replies.registry import live_jobs
from chat.replies.stream import RedisReplyStream
from chat.telemetry import metrics

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- Health and readiness -----------------------------------------------------------------------


def test_healthz_answers_without_session_or_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "Set-Cookie" not in response.headers
    assert "no-cache" in response["Cache-Control"]


async def test_readyz_checks_the_database_and_redis(use_redis):
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    assert "Set-Cookie" not in response.headers


async def test_readyz_without_redis_needs_only_the_database():
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "not configured"}


async def test_readyz_is_503_naming_redis_when_it_is_unreachable(settings, free_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    errors_before = sample("chat_redis_errors_total", operation="readyz")

    response = await AsyncClient().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["redis"].startswith("error: ")
    assert sample("chat_redis_errors_total", operation="readyz") == errors_before + 1


def test_readyz_is_503_naming_the_database_when_it_fails(client, monkeypatch):
    from django.db import connection

    def refuse() -> None:
        raise connection.Database.OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "error: OperationalError"


# --- Metrics -------------------------------------------------------------------------------------


def test_metrics_are_not_found_without_a_token(client, settings):
    settings.CHAT_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_bearer_token(client, settings):
    settings.CHAT_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert right.status_code == 200 and right["Content-Type"].startswith("text/plain")
    assert "Set-Cookie" not in right.headers


async def test_metrics_count_a_finished_reply(visitor, settings):
    settings.CHAT_METRICS_TOKEN = "s3cret-token"
    completed = sample("chat_replies_ended_total", reason="completed")
    tokens = sample("chat_output_tokens_total", provider="demo")
    ttft = sample("chat_time_to_first_token_seconds_count", provider="demo")
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Count me", model_choice="demo:demo"
    )
    job = next(
        job for job in live_jobs() if job.get_name() == f"reply-{started.assistant_message.pk}"
    )
    assert sample("chat_live_replies") >= 1
    await asyncio.wait_for(job, 10)

    response = await AsyncClient().get("/metrics", headers={"Authorization": "Bearer s3cret-token"})

    text = response.content.decode()
    expected_tokens = len(tokenize(demo_reply("Count me")))
    assert sample("chat_replies_ended_total", reason="completed") == completed + 1
    assert sample("chat_output_tokens_total", provider="demo") == tokens + expected_tokens
    assert sample("chat_time_to_first_token_seconds_count", provider="demo") == ttft + 1
    assert sample("chat_live_replies") == 0
    assert f'chat_replies_ended_total{{reason="completed"}} {completed + 1}' in text
    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.COMPLETED


async def test_metrics_count_readers_while_they_follow_a_reply(visitor, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 50
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Readers", model_choice="demo:demo"
    )
    message_id = started.assistant_message.pk
    from chat.web.updates import reply_updates

    updates = metrics.reading("sse", reply_updates(message_id, after=0))
    first = await anext(updates)
    assert first is not None
    assert sample("chat_readers", transport="sse") == 1
    async for update in updates:
        if update is not None and update.final:
            break
    await updates.aclose()
    assert sample("chat_readers", transport="sse") == 0


async def test_redis_failures_are_counted_and_still_raised(settings, free_port):
    stream = RedisReplyStream(url=f"redis://127.0.0.1:{free_port()}/0", retention_seconds=60)
    before = sample("chat_redis_errors_total", operation="read")
    with pytest.raises(Exception, match="(?i)connect"):
        await stream.read(1, after=0, timeout=0)
    assert sample("chat_redis_errors_total", operation="read") == before + 1


def test_a_failing_rate_limit_cache_counts_as_a_redis_error(client, settings, free_port):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.CHAT_RATE_LIMIT = "20/m"
    before = sample("chat_redis_errors_total", operation="rate_limit")
    client.get("/streaming-demo")
    response = client.post(
        "/streaming-demo/messages",
        {"message": "hello", "model": "demo:demo", "conversation": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 503
    assert sample("chat_redis_errors_total", operation="rate_limit") == before + 1


async def test_an_unreachable_redis_is_counted_by_the_readiness_ping(settings, free_port):
    stream = RedisReplyStream(url=f"redis://127.0.0.1:{free_port()}/0", retention_seconds=60)
    before = sample("chat_redis_errors_total", operation="ping")
    assert await stream.available() is False
    assert sample("chat_redis_errors_total", operation="ping") == before + 1


# --- Static files --------------------------------------------------------------------------------


async def test_static_files_are_served_by_whitenoise_with_nosniff():
    response = await AsyncClient().get("/static/chat/chat.js")
    assert response.status_code == 200
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert b"htmx" in body
    assert response["Content-Type"].startswith("text/javascript")
    assert response["X-Content-Type-Options"] == "nosniff"
    # Unhashed names (no collectstatic here) are cached briefly, never forever.
    assert response["Cache-Control"] == "max-age=60, public"
    assert "Set-Cookie" not in response.headers


async def test_a_missing_static_file_is_a_plain_404():
    response = await AsyncClient().get("/static/chat/no-such-file.js")
    assert response.status_code == 404
