"""A key holder's malformed body is a 4xx in OpenAI's error shape, never a 500 (issue 18).

Before: JSON nested 1,000 deep was a RecursionError; `"modalities": 1` a TypeError;
`"max_tokens": 10**40` an OverflowError on SQLite and ≥ 2**31 a DataError answered as a 503 on
PostgreSQL; and `n: true`, `n: 1.0`, `tools: {}`, `stream_options: []` were accepted.
Runs on SQLite and on PostgreSQL (scripts/with_postgres.py).
"""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import sync_to_async

from chat.api.keys import api_key_create
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"model": "demo:demo", "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(autouse=True)
def no_key_rate_limit(settings):
    settings.CHAT_API_KEY_RATE_LIMIT = ""


@pytest.fixture
def api_key(django_user_model) -> str:
    return api_key_create(user=django_user_model.objects.create_user("ada"), name="tests")[1]


async def post(async_client, api_key: str, body: dict | str | bytes):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return await async_client.post(
        "/v1/chat/completions",
        data=data,
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_field(raw_value: str) -> str:
    """HELLO with `metadata` set to a value written as raw JSON."""
    return json.dumps(HELLO)[:-1] + f', "metadata": {raw_value}}}'


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        # Nested past what any request needs, anywhere in the body: refused before parsing.
        (with_field(nested(1000)), None, "nested"),
        (with_field('{"a":' * 5000 + "1" + "}" * 5000), None, "nested"),
        (nested(100_000), None, "nested"),
        # ... but brackets inside strings are text, not nesting.
        pytest.param({**HELLO, "user": "[" * 5000}, None, None, id="brackets-in-a-string"),
        ({**HELLO, "modalities": 1}, "modalities", "array"),
        ({**HELLO, "modalities": True}, "modalities", "array"),
        ({**HELLO, "modalities": 1.5}, "modalities", "array"),
        ({**HELLO, "modalities": "text"}, "modalities", "array"),
        ({**HELLO, "modalities": ["text", "audio"]}, "modalities", "Only text"),
        ({**HELLO, "n": True}, "n", "integer"),
        ({**HELLO, "n": 1.0}, "n", "integer"),
        ({**HELLO, "n": "1"}, "n", "integer"),
        ({**HELLO, "n": 10**40}, "n", "n=1"),
        ({**HELLO, "tools": {}}, "tools", "array"),
        ({**HELLO, "tools": "x"}, "tools", "array"),
        ({**HELLO, "functions": {}}, "functions", "array"),
        ({**HELLO, "tool_choice": {}}, "tool_choice", "not supported"),
        ({**HELLO, "stream": True, "stream_options": []}, "stream_options", "object"),
        ({**HELLO, "stream": True, "stream_options": "x"}, "stream_options", "object"),
        (
            {**HELLO, "stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
            "true or false",
        ),
        ({**HELLO, "stream": 1}, "stream", "true or false"),
        ({**HELLO, "max_tokens": 1.5}, "max_tokens", "positive integer"),
        ({**HELLO, "max_tokens": 1e40}, "max_tokens", "positive integer"),
        ({**HELLO, "max_tokens": True}, "max_tokens", "positive integer"),
        ({**HELLO, "max_tokens": -(10**40)}, "max_tokens", "positive integer"),
        ({**HELLO, "max_completion_tokens": "5"}, "max_completion_tokens", "positive integer"),
        ({**HELLO, "logprobs": 1}, "logprobs", "true or false"),
        ({**HELLO, "logprobs": True}, "logprobs", "not supported"),
        ({**HELLO, "audio": 1}, "audio", "Only text"),
        ({**HELLO, "response_format": []}, "response_format", "text"),
        ({**HELLO, "model": 5}, "model", "model"),
        ({**HELLO, "model": "x" * 10_000}, "model", "does not exist"),
        ({**HELLO, "messages": {"role": "user"}}, "messages", "array"),
        ({**HELLO, "messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role", "role"),
        ({**HELLO, "messages": [{"role": {}, "content": "x"}]}, "messages[0].role", "role"),
        ({**HELLO, "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
        (
            {**HELLO, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0]",
            "text",
        ),
        (
            {**HELLO, "messages": [{"role": "user", "content": [{"type": ["text"]}]}]},
            "messages[0].content[0]",
            "text",
        ),
        ({**HELLO, "messages": [{"role": "user", "content": "x", "name": 5}]}, None, None),
        ({**HELLO, "messages": [{"role": "user", "content": "x", "tool_calls": 5}]},
         "messages[0].role", "not supported"),
        ('{"model": "demo:demo", "messages": [], "x": 1e999999}', "messages", "non-empty"),
        ('{"max_tokens": ' + "9" * 5000 + "}", None, "parse the JSON"),
        (b'{"model": "\xff"}', None, "parse the JSON"),
        ("[]", None, "JSON object"),
    ],
)  # fmt: skip
async def test_a_malformed_body_is_a_400_in_openais_shape(
    async_client, api_key, caplog, body, param, words
):
    with caplog.at_level(logging.WARNING):
        response = await post(async_client, api_key, body)

    if words is None:  # well-formed after all: answered, and the reply is stored whole
        assert response.status_code == 200, response.content[:300]
        assert await Message.objects.filter(role="assistant", status="complete").acount() == 1
    else:
        assert 400 <= response.status_code < 500, response.content[:300]
        assert response["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param and words in error["message"], error
        assert not await Conversation.objects.aexists()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [2**31 - 1, 2**31, 2**63, 10**40])
async def test_a_max_tokens_past_the_servers_cap_is_capped_before_it_is_stored(
    async_client, api_key, settings, caplog, name, value
):
    settings.CHAT_MAX_OUTPUT_TOKENS = 300

    with caplog.at_level(logging.WARNING):
        response = await post(async_client, api_key, {**HELLO, name: value})

    assert response.status_code == 200, response.content[:300]
    reply = await Message.objects.aget(role="assistant")
    assert reply.max_output_tokens == 300
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_max_tokens_below_the_cap_is_kept(async_client, api_key, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 300

    response = await post(async_client, api_key, {**HELLO, "max_tokens": 12})

    assert response.status_code == 200
    assert (await Message.objects.aget(role="assistant")).max_output_tokens == 12


@sync_to_async
def _count() -> int:
    return Conversation.objects.count()


async def test_a_body_within_the_nesting_limit_is_served(async_client, api_key):
    body = with_field(json.dumps({"a": [[[[{"b": [1, {"c": "]]]}}}"}]}]]]]}))

    response = await post(async_client, api_key, body)

    assert response.status_code == 200, response.content[:300]
    assert await _count() == 1
