"""The OpenAI-compatible API, driven by the official `openai` SDK against a real Daphne server,
and in-process over ASGI for the cases the SDK cannot express (headers, cookies, raw bodies).

The Daphne server shares the test database (the same SQLite file, or the suite's PostgreSQL
test database), so a test creates users and keys with the ORM, calls the server with the SDK,
and reads back what the server saved. Its OpenAI provider points at the fake upstream.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import openai
import pytest
import redis
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import connection
from PIL import Image

from chat.api.keys import api_key_authenticate, api_key_create
from chat.conversations.reads import Visitor
from chat.models import ApiKey, Attachment, Conversation, Message, SpendingCap
from chat.providers.demo import demo_reply
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_TEXT = "Hello there! This reply was streamed by the fake upstream."


# Rate-limit tests use hourly rates: a count of a per-minute rate resets when its window turns,
# which could fall between two requests of a test on a slow machine.
@pytest.fixture(autouse=True)
def no_key_rate_limit(settings):
    settings.CHAT_API_KEY_RATE_LIMIT = ""


# --- The server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(fake_upstream_server) -> Iterator:
    with fake_upstream_server() as fake:
        yield fake


@pytest.fixture
def fresh_upstream(upstream):
    upstream.script()
    upstream.requests.clear()
    upstream.client_disconnected.clear()
    return upstream


def _test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="module")
def api_server(django_db_setup, upstream, tmp_path_factory, app_env, daphne) -> Iterator[str]:
    """Daphne serving the app on the test database, the OpenAI provider on the fake upstream."""
    data_dir = tmp_path_factory.mktemp("api-server")
    env = app_env(
        data_dir,
        DATABASE_URL=_test_database_url(),
        OPENAI_API_KEY="sk-upstream",
        OPENAI_BASE_URL=upstream.openai_base_url,
        OPENAI_MODELS="gpt-4.1-mini",
        CHAT_DEMO_TOKENS_PER_SECOND="0",
        CHAT_PROVIDER_MAX_RETRIES="0",
        CHAT_API_KEY_RATE_LIMIT="",
        CHAT_FLUSH_SECONDS="0.2",
    )
    with daphne(env, data_dir / "daphne.log") as url:
        yield url


@pytest.fixture
def ada(django_user_model) -> User:
    # No password: hashing one costs a second of CPU per test, and no test signs in with it.
    return django_user_model.objects.create_user("ada")


@pytest.fixture
def ada_key(ada) -> str:
    return api_key_create(user=ada, name="tests")[1]


@pytest.fixture
def sdk(api_server, ada_key, fresh_upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_server}/v1", api_key=ada_key, max_retries=0, timeout=30)


def wait_for(condition, *, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_user("staff", is_staff=True, is_superuser=True))
    return client


def only_api_conversation() -> Conversation:
    return Conversation.objects.get(source=Conversation.Source.API)


# --- Through the SDK ---------------------------------------------------------------------------


def test_sdk_completion_is_a_saved_api_conversation_of_the_keys_user(sdk, ada):
    completion = sdk.chat.completions.create(
        model="demo:demo", messages=[{"role": "user", "content": "Explain queues"}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "demo:demo"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == demo_reply("Explain queues")
    assert choice.finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    conversation = only_api_conversation()
    assert completion.id == f"chatcmpl-{conversation.pk.hex}"
    assert conversation.user == ada and conversation.title == "Explain queues"
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.COMPLETE and reply.content == choice.message.content
    assert reply.output_tokens == completion.usage.completion_tokens


def test_sdk_stream_sends_role_first_finish_reason_then_usage_last(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="openai:gpt-4.1-mini",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == UPSTREAM_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 9)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    reply = Message.objects.get(conversation=only_api_conversation(), role="assistant")
    # Priced like any page reply (gpt-4.1-mini has a genai-prices price).
    assert reply.usage_source == Message.UsageSource.PROVIDER and reply.cost_microusd > 0


def test_sdk_stream_without_include_usage_has_no_usage_chunk(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == demo_reply("Hi")


def test_system_prompt_and_history_reach_the_provider_and_are_stored_as_context(sdk, upstream):
    completion = sdk.chat.completions.create(
        model="gpt-4.1-mini",  # a bare name: only one provider offers it
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is a queue?"},
            {"role": "assistant", "content": "Une file d'attente."},
            {"role": "user", "content": [{"type": "text", "text": "And a stack?"}]},
        ],
        max_tokens=9,
        temperature=0.2,
        user="ignored-but-accepted",
    )

    sent = upstream.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What is a queue?"},
        {"role": "assistant", "content": "Une file d'attente."},
        {"role": "user", "content": "And a stack?"},
    ]
    assert sent["max_completion_tokens"] == 9
    # The upstream wrote 9 tokens, all that max_tokens allowed.
    assert completion.choices[0].finish_reason == "length"
    conversation = only_api_conversation()
    assert conversation.system_prompt == "Answer in French."
    stored = list(conversation.messages.values_list("role", "from_client", "content"))
    assert stored == [
        ("user", True, "What is a queue?"),
        ("assistant", True, "Une file d'attente."),
        ("user", False, "And a stack?"),
        ("assistant", False, UPSTREAM_TEXT),
    ]
    assert conversation.unpriced_replies == 0, "the client's own turn is not an unpriced reply"


def test_sdk_sends_images_in_earlier_and_current_turns_and_the_model_gets_each(sdk, upstream):
    def png(size: tuple[int, int]) -> dict:
        out = io.BytesIO()
        Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
        return {"type": "image_url", "image_url": {"url": url}}

    first, second = png((80, 60)), png((30, 40))
    messages: list = [{"role": "user", "content": [{"type": "text", "text": "A?"}, first]}]
    sdk.chat.completions.create(model="gpt-4.1-mini", messages=messages)
    messages += [
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": [{"type": "text", "text": "B?"}, second]},
    ]
    streamed = sdk.chat.completions.create(model="gpt-4.1-mini", messages=messages, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)

    # Re-encoded (RGB without transparency: JPEG) at their own pixel sizes, earlier turn first.
    assert upstream.requests[-2].images() == [("image_url", "JPEG", (80, 60))]
    assert upstream.requests[-1].images() == [
        ("image_url", "JPEG", (80, 60)),
        ("image_url", "JPEG", (30, 40)),
    ]
    # The first image is stored once and shared by the second request's copy of it.
    assert Attachment.objects.values("storage_name").distinct().count() == 2
    assert Attachment.objects.filter(message__isnull=False).count() == 3


def test_sdk_raises_its_own_exception_types(sdk, api_server, ada_key):
    stranger = openai.OpenAI(base_url=f"{api_server}/v1", api_key="csk-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        stranger.models.list()
    assert denied.value.code == "invalid_api_key"

    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(
            model="gpt-5-turbo", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found" and missing.value.param == "model"

    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(
            model="demo:demo",
            messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}],
        )
    assert bad.value.code == "image_url_not_allowed"
    assert bad.value.param == "messages[0].content[1].image_url"
    assert "data URL" in bad.value.message

    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    assert not Conversation.objects.exists()


def test_spending_cap_refuses_with_429_and_retry_after(sdk):
    SpendingCap.objects.create(scope=SpendingCap.Scope.EVERYONE, daily_cap=0)

    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(
            model="openai:gpt-4.1-mini", messages=[{"role": "user", "content": "Hi"}]
        )

    assert refused.value.code == "insufficient_quota"
    assert "daily spending limit" in refused.value.message
    retry_after = int(refused.value.response.headers["Retry-After"])
    assert 0 < retry_after <= 24 * 3600
    assert not Message.objects.exists(), "refused before anything was saved or sent"
    # A free model cannot spend the cap, as on the page.
    assert (
        sdk.chat.completions.create(model="demo:demo", messages=[{"role": "user", "content": "Hi"}])
        .choices[0]
        .message.content
    )


def test_sdk_lists_and_retrieves_models(sdk):
    ids = [model.id for model in sdk.models.list()]

    assert ids == ["demo:demo", "openai:gpt-4.1-mini"]
    model = sdk.models.retrieve("openai:gpt-4.1-mini")
    assert (model.object, model.owned_by) == ("model", "openai")
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("openai:gpt-0")


def test_a_dropped_streaming_client_leaves_the_reply_to_finish_and_staff_see_it(
    sdk, upstream, staff_client
):
    text = "A long reply that keeps streaming after the client has gone away. " * 3
    upstream.script(text=text, chunks=30, delay=0.1)
    stream = sdk.chat.completions.create(
        model="openai:gpt-4.1-mini",
        messages=[{"role": "user", "content": "Tell me a long story"}],
        stream=True,
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) > 10:
            break
    stream.close()  # the client hangs up mid-reply

    reply = wait_for(
        lambda: Message.objects.filter(role="assistant", status=Message.Status.COMPLETE).first(),
        what="the reply to complete without its client",
    )
    assert reply.content == text and reply.ended_reason == Message.EndedReason.COMPLETED
    assert text.startswith(received)
    assert not upstream.client_disconnected.is_set(), "the job kept reading the provider"
    page = staff_client.get(f"/admin/chat/conversation/{reply.conversation_id}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<dd data-source="api">API</dd>' in html
    assert "keeps streaming after the client has gone away" in html


def test_a_client_that_hangs_up_on_a_non_streaming_request_still_gets_its_reply_saved(
    sdk, upstream, api_server, ada_key
):
    upstream.script(chunks=10, delay=0.1)
    host, port = urllib.parse.urlsplit(api_server).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = {"model": "openai:gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={**bearer(ada_key), "Content-Type": "application/json"},
    )
    wait_for(lambda: upstream.requests, what="the reply to start")
    connection.close()  # gone before the answer

    reply = wait_for(
        lambda: Message.objects.filter(role="assistant", status=Message.Status.COMPLETE).first(),
        what="the reply to complete without its client",
    )
    assert reply.content == UPSTREAM_TEXT
    assert (
        sdk.chat.completions.retrieve(f"chatcmpl-{reply.conversation_id.hex}")
        .choices[0]
        .message.content
        == UPSTREAM_TEXT
    )


def test_a_reconnecting_client_fetches_the_stored_completion_and_can_cancel(
    sdk, upstream, api_server, ada_key
):
    reply = upstream.script(text="one two three four five six", chunks=6, stall_after=2)
    before_stop = "".join(reply.pieces()[:2])
    stream = sdk.chat.completions.create(
        model="openai:gpt-4.1-mini", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    first = next(stream)
    completion_id = first.id
    assert upstream.wait_for_stall(10)
    while True:  # the text so far is saved within a flush interval
        stored = sdk.chat.completions.retrieve(completion_id)
        if stored.choices[0].message.content:
            break
        time.sleep(0.05)
    assert stored.choices[0].finish_reason is None
    assert stored.metadata["status"] == "streaming"

    cancel = urllib.request.Request(
        f"{api_server}/v1/chat/completions/{completion_id}/cancel",
        method="POST",
        headers={"Authorization": f"Bearer {ada_key}"},
    )
    with urllib.request.urlopen(cancel, timeout=30) as response:  # noqa: S310 - loopback
        cancelled = json.loads(response.read())
    rest = list(stream)

    assert cancelled["metadata"] == {
        "status": "stopped",
        "ended_reason": "stopped",
        "conversation": str(only_api_conversation().pk),
    }
    assert cancelled["choices"][0]["finish_reason"] == "stop"
    assert cancelled["choices"][0]["message"]["content"] == before_stop
    assert rest[-1].choices[0].finish_reason == "stop"
    again = sdk.chat.completions.retrieve(completion_id)
    assert again.choices[0].message.content == before_stop and again.usage.completion_tokens > 0
    # Another user's key cannot see it.
    other = User.objects.create_user("grace")
    other_sdk = openai.OpenAI(
        base_url=f"{api_server}/v1", api_key=api_key_create(user=other, name="g")[1], max_retries=0
    )
    with pytest.raises(openai.NotFoundError):
        other_sdk.chat.completions.retrieve(completion_id)


def test_a_provider_failure_mid_stream_is_an_error_event_the_sdk_raises(sdk, upstream):
    upstream.script(error_event_after=2)
    stream = sdk.chat.completions.create(
        model="openai:gpt-4.1-mini", messages=[{"role": "user", "content": "Fail"}], stream=True
    )

    with pytest.raises(openai.APIError) as failed:
        for _chunk in stream:
            pass

    assert failed.value.code == "provider_error"
    assert "partial reply is saved" in failed.value.message
    reply = Message.objects.get(role="assistant")
    assert reply.ended_reason == Message.EndedReason.PROVIDER_ERROR and reply.content


def test_a_provider_failure_without_streaming_is_a_502_in_openais_shape(sdk, upstream):
    upstream.script(status=401, error_message="Incorrect API key provided: sk-up***")

    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(
            model="openai:gpt-4.1-mini", messages=[{"role": "user", "content": "Hi"}]
        )

    assert failed.value.status_code == 502 and failed.value.code == "provider_error"
    reply = Message.objects.get(role="assistant")
    assert reply.ended_reason == Message.EndedReason.PROVIDER_ERROR
    assert reply.error_text in failed.value.message  # the SDK prefixes "Error code: 502 - "


# --- In-process, over ASGI ---------------------------------------------------------------------


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


async def post_completion(async_client, raw_key: str, body: dict | str):
    data = body if isinstance(body, str) else json.dumps(body)
    return await async_client.post(
        "/v1/chat/completions", data=data, content_type="application/json", headers=bearer(raw_key)
    )


HELLO = {"model": "demo:demo", "messages": [{"role": "user", "content": "Hello"}]}


async def test_api_requests_use_no_session_and_no_cookies(async_client, ada_key):
    sessions = await Session.objects.acount()

    response = await post_completion(async_client, ada_key, HELLO)
    models = await async_client.get("/v1/models", headers=bearer(ada_key))

    assert response.status_code == 200 and models.status_code == 200
    assert not response.cookies and not models.cookies
    assert await Session.objects.acount() == sessions


async def test_missing_or_malformed_keys_are_401_in_openais_shape(async_client):
    missing = await async_client.get("/v1/models")
    basic = await async_client.get("/v1/models", headers={"Authorization": "Basic YTpi"})

    for response in (missing, basic):
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "missing_api_key" and "Authorization" in error["message"]


async def test_api_can_be_turned_off(async_client, settings, ada_key):
    settings.CHAT_API_ENABLED = False

    assert (await post_completion(async_client, ada_key, HELLO)).status_code == 404
    assert (await async_client.get("/v1/models", headers=bearer(ada_key))).status_code == 404


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ("{not json", None, "parse the JSON"),
        ({**HELLO, "messages": []}, "messages", "non-empty"),
        ({**HELLO, "tools": [{"type": "function"}]}, "tools", "not supported"),
        (
            {**HELLO, "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            "messages[0].role",
            "not supported",
        ),
        (
            {**HELLO, "messages": [*HELLO["messages"], {"role": "assistant", "content": "x"}]},
            "messages",
            "role 'user'",
        ),
        ({**HELLO, "max_tokens": 0}, "max_tokens", "positive integer"),
        ({**HELLO, "n": 2}, "n", "n=1"),
        ({**HELLO, "stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({"messages": HELLO["messages"]}, "model", "model"),
        ({**HELLO, "messages": [{"role": "user", "content": "x" * 9000}]}, "messages", "limit"),
    ],
)
async def test_bad_requests_are_400_naming_the_parameter(async_client, ada_key, body, param, words):
    response = await post_completion(async_client, ada_key, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    assert not await Conversation.objects.aexists()


async def test_a_body_over_the_upload_limit_is_413_in_openais_shape(
    async_client, settings, ada_key
):
    settings.CHAT_API_MAX_BODY_BYTES = 1000
    body = {**HELLO, "messages": [{"role": "user", "content": "x" * 2000}]}

    response = await post_completion(async_client, ada_key, body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_an_ambiguous_bare_model_name_is_400_listing_the_choices(
    async_client, settings, ada_key
):
    settings.OPENAI_API_KEY, settings.OPENAI_MODELS = "sk-x", ["shared"]
    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_MODELS = "sk-y", ["shared"]

    response = await post_completion(async_client, ada_key, {**HELLO, "model": "shared"})

    assert response.status_code == 400
    assert "openai:shared, anthropic:shared" in response.json()["error"]["message"]


async def test_no_configured_model_is_503(async_client, settings, ada_key):
    settings.CHAT_DEMO_ENABLED = False
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = ""

    response = await post_completion(async_client, ada_key, HELLO)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


async def test_each_key_has_a_rate_limit_with_retry_after(async_client, settings, ada, ada_key):
    settings.CHAT_API_KEY_RATE_LIMIT = "2/h"
    other_key = (await api_key_acreate(ada, "second"))[1]

    statuses = [(await post_completion(async_client, ada_key, HELLO)).status_code for _ in range(2)]
    limited = await post_completion(async_client, ada_key, HELLO)
    other = await post_completion(async_client, other_key, HELLO)

    assert statuses == [200, 200]
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 3600
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert other.status_code == 200, "another key of the same user has its own count"


async def test_the_users_rate_limit_is_shared_with_the_page(async_client, settings, ada, ada_key):
    settings.CHAT_RATE_LIMIT = "2/h"
    await async_client.aforce_login(ada)
    page = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "From the page", "model": "demo:demo"},
        headers={"HX-Request": "true"},
    )

    first = await post_completion(async_client, ada_key, HELLO)
    second = await post_completion(async_client, ada_key, HELLO)

    assert page.status_code == 200 and first.status_code == 200
    assert second.status_code == 429 and int(second["Retry-After"]) > 0


async def test_the_ips_rate_limit_is_shared_with_anonymous_page_visitors(
    async_client, settings, ada_key
):
    settings.CHAT_IP_RATE_LIMIT = "1/h"
    page = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "Anonymous, same network", "model": "demo:demo"},
        headers={"HX-Request": "true"},
    )

    api = await post_completion(async_client, ada_key, HELLO)

    assert page.status_code == 200
    assert api.status_code == 429 and api.json()["error"]["code"] == "rate_limit_exceeded"


async def test_a_reply_streaming_on_the_page_counts_against_the_api_streaming_cap(
    async_client, settings, ada, ada_key
):
    settings.CHAT_MAX_STREAMING_PER_PERSON = 1
    # A page reply that is still streaming (its job would be running on some worker).
    await sync_to_async(services.reply_start)(
        visitor=Visitor(user=ada, visitor_id=""),
        conversation_id=None,
        text="Streaming on the page",
        model_choice="demo:demo",
    )

    refused = await post_completion(async_client, ada_key, HELLO)

    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "streaming" in refused.json()["error"]["message"]
    assert not await Conversation.objects.filter(source=Conversation.Source.API).aexists()


async def test_streaming_over_asgi_frames_chunks_and_done(async_client, ada_key):
    response = await post_completion(
        async_client, ada_key, {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()

    # `: ping` comments may come while a slow machine generates; they are not events.
    events = [block for block in body.split("\n\n") if block and not block.startswith(":")]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] > 0
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads if p["choices"])
    assert text == demo_reply("Hello")


async def test_open_streams_take_reader_slots_like_the_pages_sse(async_client, settings, ada_key):
    settings.CHAT_MAX_READERS_PER_PERSON = 1
    first = await post_completion(async_client, ada_key, {**HELLO, "stream": True})

    second = await post_completion(async_client, ada_key, {**HELLO, "stream": True})
    body = b"".join([chunk async for chunk in first.streaming_content]).decode()
    first.close()
    third = await post_completion(async_client, ada_key, {**HELLO, "stream": True})

    assert second.status_code == 429 and int(second["Retry-After"]) > 0
    error = second.json()["error"]
    assert "The reply was started: GET /v1/chat/completions/chatcmpl-" in error["message"]
    assert body.endswith("data: [DONE]\n\n")
    assert third.status_code == 200, "the slot came back when the first stream ended"
    third.close()


@pytest.mark.redis
async def test_streaming_reads_the_redis_reply_stream_of_a_multi_worker_setup(
    async_client, use_redis, ada_key
):
    response = await post_completion(async_client, ada_key, {**HELLO, "stream": True})
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()

    payloads = [json.loads(e[6:]) for e in body.split("\n\n") if e and e != "data: [DONE]"]
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads)
    assert text == demo_reply("Hello") and body.endswith("data: [DONE]\n\n")

    reply = await Message.objects.aget(role="assistant", from_client=False)
    assert redis.Redis.from_url(use_redis).exists(f"chatsite:reply:{{{reply.pk}}}")


async def api_key_acreate(user, name):
    return await sync_to_async(api_key_create)(user=user, name=name)


# --- Keys --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_keys_are_stored_only_as_a_digest(ada):
    api_key, raw_key = api_key_create(user=ada, name="  laptop   script ")

    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert raw_key not in json.dumps(row, default=str)
    assert row["hashed_key"] == hashlib.sha256(raw_key.encode()).hexdigest()
    assert row["name"] == "laptop script" and raw_key.startswith(row["prefix"])
    assert len(raw_key) >= 40


@pytest.mark.django_db
def test_authenticating_marks_the_key_used_and_revoked_or_inactive_keys_fail(ada):
    api_key, raw_key = api_key_create(user=ada, name="k")
    assert api_key.last_used_at is None

    assert api_key_authenticate(raw_key) == api_key
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert api_key_authenticate(raw_key[:-1] + "x") is None
    ada.is_active = False
    ada.save()
    assert api_key_authenticate(raw_key) is None
    ada.is_active = True
    ada.save()
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert api_key_authenticate(raw_key) is None


@pytest.mark.django_db
def test_settings_page_creates_a_key_shown_once_and_revokes_it(client, ada):
    assert client.get("/settings/api-keys")["Location"].startswith("/accounts/login/")
    client.force_login(ada)

    created = client.post("/settings/api-keys", {"action": "create", "name": "IDE plugin"})
    html = created.content.decode()
    api_key = ApiKey.objects.get(user=ada)
    raw_key = html.split('id="new-key-value" class="key-value" type="text" value="')[1].split('"')[
        0
    ]
    assert api_key_authenticate(raw_key) == api_key
    assert created["Cache-Control"] == "no-store" and "<script>" not in html
    listing = client.get("/settings/api-keys").content.decode()
    assert "IDE plugin" in listing and api_key.prefix in listing and raw_key not in listing

    client.post("/settings/api-keys", {"action": "revoke", "key": api_key.pk})
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key_authenticate(raw_key) is None


@pytest.mark.django_db
def test_nobody_revokes_someone_elses_key_on_the_settings_page(client, ada):
    api_key, _ = api_key_create(user=ada, name="mine")
    client.force_login(User.objects.create_user("mallory"))

    response = client.post("/settings/api-keys", {"action": "revoke", "key": api_key.pk})

    assert response.status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


@pytest.mark.django_db
def test_staff_see_keys_in_the_admin_and_revoke_them(staff_client, ada):
    api_key, raw_key = api_key_create(user=ada, name="ci runner")

    listing = staff_client.get("/admin/chat/apikey/").content.decode()
    assert "ci runner" in listing and "ada" in listing and raw_key not in listing
    staff_client.post(
        "/admin/chat/apikey/",
        {"action": "revoke_selected", "_selected_action": [api_key.pk]},
    )

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert staff_client.get("/admin/chat/apikey/add/").status_code == 403


@pytest.mark.django_db
def test_create_api_key_command_prints_a_working_key(ada, capsys):
    call_command("create_api_key", "ada", "--name", "cron job")

    raw_key = capsys.readouterr().out.strip()
    assert api_key_authenticate(raw_key).name == "cron job"
    with pytest.raises(CommandError, match="No user named"):
        call_command("create_api_key", "nobody")


# --- Analytics -----------------------------------------------------------------------------------


def test_api_replies_count_in_the_analytics_and_client_turns_do_not(staff_client, sdk):
    sdk.chat.completions.create(
        model="demo:demo",
        messages=[
            {"role": "user", "content": "Earlier"},
            {"role": "assistant", "content": "An answer the client had"},
            {"role": "user", "content": "Now"},
        ],
    )

    page = staff_client.get("/admin/chat/usagereport/?days=7").content.decode()

    assert 'data-figure="replies">1<' in page
