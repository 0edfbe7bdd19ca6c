"""Property-based test (issue 18): whatever body a key holder posts to /v1/chat/completions,
the answer is a 200 or a 4xx in OpenAI's error shape — never a 5xx — nothing is logged as an
error, and nothing is half-stored: a refused body stores nothing, an accepted one a whole
conversation whose reply has ended.

Bodies are generated near the real shape (so many are accepted and many fail one check
deep inside), with every field the API reads given values of every JSON type, integers past
what any database column holds, NaN and Infinity, NUL and lone surrogates, nesting past the
limit, and raw bytes that are not JSON at all.

In CI (CI=true) 2,000 examples run on SQLite, and again on PostgreSQL (scripts/with_postgres.py);
elsewhere 150 keep the loop quick. API_FUZZ_EXAMPLES overrides both.
"""

from __future__ import annotations

import json
import os

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.api.keys import api_key_create
from chat.models import Conversation, Message

# Thousands of examples make one test: the suite's 120 s per-test limit is for ordinary tests.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1200)]

IN_CI = os.environ.get("CI", "").lower() == "true"
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", 2000 if IN_CI else 150))
MAX_CHARS = 300  # the message limit under test, small so that too-long messages come up often

nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(
        alphabet=st.sampled_from(
            ["\x00", "\x01", "\r", "\n", "\u200b", "\u202e", "\ufeff", "<", "&", '"', "\\",
             "a", " ", "\ud800", "\U0001f600", "[", "{"]
        ),
        max_size=30,
    ),
    st.just("x" * (MAX_CHARS + 1)),
)  # fmt: skip
big_integers = st.sampled_from(
    [0, 1, 2, -1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**40, -(10**40)]
)
nasty_scalar = st.one_of(
    st.none(),
    st.booleans(),
    big_integers,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0, 1.5, 1e40, 1e308, -0.0]),
    nasty_text,
)
nasty_value = st.recursive(
    nasty_scalar,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
valid_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
)


@st.composite
def content(draw):
    kind = draw(st.sampled_from(["text", "text", "parts", "nasty"]))
    if kind == "text":
        return draw(st.one_of(valid_text, nasty_text))
    if kind == "parts":
        part = st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": valid_text}),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "refusal", "image_url", 5]), "text": nasty_value}
            ),
            nasty_value,
        )
        return draw(st.lists(part, max_size=3))
    return draw(nasty_value)


@st.composite
def message(draw):
    fields = {
        "role": draw(
            st.one_of(
                st.sampled_from(["user", "user", "assistant", "system", "developer", "tool"]),
                nasty_scalar,
            )
        ),
        "content": draw(content()),
    }
    if draw(st.integers(0, 5)) == 0:
        fields[draw(st.sampled_from(["name", "tool_calls", "function_call", "x"]))] = draw(
            nasty_value
        )
    return fields


# Every field the API reads, with a value of any type; the valid ones weighted up.
OPTIONAL_FIELDS = {
    "stream": st.one_of(st.booleans(), nasty_scalar),
    "stream_options": st.one_of(
        st.fixed_dictionaries({"include_usage": st.one_of(st.booleans(), nasty_scalar)}),
        nasty_value,
    ),
    "max_tokens": st.one_of(st.integers(1, 5000), big_integers, nasty_scalar),
    "max_completion_tokens": st.one_of(st.integers(1, 5000), big_integers, nasty_scalar),
    "n": st.one_of(st.just(1), nasty_scalar),
    "tools": st.one_of(st.just([]), nasty_value),
    "functions": nasty_value,
    "tool_choice": st.one_of(st.just("none"), nasty_value),
    "logprobs": st.one_of(st.booleans(), nasty_scalar),
    "audio": nasty_value,
    "modalities": st.one_of(st.just(["text"]), st.lists(nasty_scalar, max_size=2), nasty_value),
    "response_format": st.one_of(st.just({"type": "text"}), nasty_value),
    "temperature": nasty_value,
    "seed": big_integers,
    "metadata": nasty_value,
    "user": nasty_text,
}


@st.composite
def api_body(draw) -> bytes:
    shape = draw(st.sampled_from(["body"] * 6 + ["deep", "deep", "raw"]))
    if shape == "raw":
        return draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from(
                    [b"", b"null", b"[]", b'"text"', b"{", b'{"model": "demo:demo"', b"\xff\xfe",
                     b'{"messages": [' * 50, b"[" * 100_000, b'{"a":' * 3000]
                ),
            )
        )  # fmt: skip
    body: dict = {
        "model": draw(
            st.one_of(st.sampled_from(["demo:demo"] * 4 + ["demo", "demo:nope", ""]), nasty_scalar)
        ),
        "messages": draw(
            st.one_of(
                st.lists(message(), min_size=1, max_size=4).map(
                    lambda turns: [*turns, {"role": "user", "content": "hello"}]
                ),
                st.lists(message(), max_size=4),
                nasty_value,
            )
        ),
    }
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), max_size=4, unique=True)):
        body[name] = draw(OPTIONAL_FIELDS[name])
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    if shape == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 1000, 1000, 5000]))
        nesting = draw(st.sampled_from(["[", '{"a":']))
        closing = "]" if nesting == "[" else "}"
        raw = raw[:-1] + f', "metadata": {nesting * depth}1{closing * depth}}}'.encode()
    return raw


@pytest.fixture
def api_settings(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = MAX_CHARS
    settings.CHAT_MAX_SYSTEM_PROMPT_CHARS = MAX_CHARS
    settings.CHAT_API_KEY_RATE_LIMIT = ""
    settings.CHAT_MAX_OUTPUT_TOKENS = 400
    return settings


@pytest.fixture
def api_key(django_user_model, api_settings) -> str:
    return api_key_create(user=django_user_model.objects.create_user("fuzz"), name="fuzz")[1]


# Not thread-sensitive: the test's own reads must never queue behind the app's work.
@sync_to_async(thread_sensitive=False)
def conversation_ids() -> set[object]:
    return set(Conversation.objects.values_list("pk", flat=True))


@sync_to_async(thread_sensitive=False)
def stored(conversation_ids: set[object]) -> list[dict]:
    """Each of these conversations: its counter, its rows, its replies."""
    return [
        {
            **row,
            "rows": Message.objects.filter(conversation_id=row["pk"]).count(),
            "replies": list(
                Message.objects.filter(conversation_id=row["pk"], role="assistant").values(
                    "status", "max_output_tokens"
                )
            ),
        }
        for row in Conversation.objects.filter(pk__in=conversation_ids).values(
            "pk", "message_count", "source"
        )
    ]


async def settle() -> None:
    # Replies are jobs: each ends on its own; wait for them so the next example starts clean.
    from chat.replies.registry import live_jobs

    for job in live_jobs():
        await job


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(raw=api_body())
async def test_api_bodies_never_5xx_never_log_an_error_and_never_half_store(
    raw, api_key, log_watch
):
    log_watch.bad.clear()
    before = await conversation_ids()
    client = AsyncClient(raise_request_exception=False)
    async with ThreadSensitiveContext():
        response = await client.post(
            "/v1/chat/completions",
            data=raw,
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        streamed = b""
        if response.streaming:
            async for chunk in response.streaming_content:
                streamed += chunk
    await settle()
    after = await conversation_ids()

    assert response.status_code in (200,) or 400 <= response.status_code < 500, (
        response.status_code,
        raw[:300],
        (streamed or response.content)[:300],
    )
    assert after >= before
    new = await stored(after - before)
    if response.status_code == 200:
        if response.streaming:
            assert streamed.endswith(b"data: [DONE]\n\n"), streamed[-300:]
        else:
            assert response.json()["object"] == "chat.completion"
        # One whole conversation: its counter matches its rows, its reply has ended.
        (conversation,) = new
        assert conversation["source"] == "api"
        assert conversation["message_count"] == conversation["rows"]
        (reply,) = conversation["replies"]
        assert reply["status"] != Message.Status.STREAMING
        assert reply["max_output_tokens"] is None or 1 <= reply["max_output_tokens"] <= 400
    else:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert new == [], raw[:300]
    assert not log_watch.bad, [r.getMessage() for r in log_watch.bad]
