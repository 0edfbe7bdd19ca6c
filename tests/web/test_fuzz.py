"""Property-based tests (issue 7): whatever a visitor sends, as WebSocket frames or form posts,
the server answers without a 500, without closing a socket with 1011, without a traceback in the
log, and without losing or duplicating a message.

In CI (CI=true) the two properties together run more than 10,000 generated frames and posts
on SQLite (and a quarter of that again on PostgreSQL);
elsewhere a smaller profile keeps the loop quick (FUZZ_EXAMPLES overrides both).
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.conversations.text import has_visible, text_clean
from chat.models import Message
from chat.web.visitors import VISITOR_SESSION_KEY
from chatsite.asgi import application

# Thousands of examples make one test: the suite's 120 s per-test limit is for ordinary tests.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1200)]

IN_CI = os.environ.get("CI", "").lower() == "true"
# In CI's SQLite run: 1,000 examples of ~9 frames each (~8,500 frames) and 2,000 posts. The
# PostgreSQL run (DATABASE_URL set) repeats a quarter of that, for NUL and friends there.
_SHARE = 4 if os.environ.get("DATABASE_URL") else 1
WS_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", (1000 if IN_CI else 60) // _SHARE))
POST_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", (2000 if IN_CI else 150) // _SHARE))
FRAMES_PER_EXAMPLE = 16
WAIT = 30  # seconds for an answer: generous, the machine may be busy
MAX_CHARS = 300  # the limit under test, small so that too-long messages are generated often

# Text that tries everything: controls, NUL, surrogates, zero-width and bidi characters, markup.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from(
            ["\x00", "\x01", "\r", "\n", "\t", "\u200b", "\u202e", "\ufeff", "<", ">", "&",
             '"', "'", "a", " ", "\ud800", "\U0001f600", "$", "`", "\\"]
        ),
        max_size=40,
    ),
    st.just("x" * (MAX_CHARS + 1)),
)  # fmt: skip
nasty_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
nasty_value = st.recursive(
    nasty_scalar,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
models = st.sampled_from(["demo:demo", "demo:nope", "", "openai:gpt-4.1-mini", "x" * 500])
actions = st.sampled_from(["send", "stop", "watch", "", "delete", None])


@st.composite
def ws_frames(draw) -> str:
    kind = draw(st.sampled_from(["send", "send", "watch", "stop", "junk", "raw"]))
    if kind == "raw":
        return draw(st.sampled_from(['{"action": "send"', "[]", '"text"', "{}", "null", "{" * 3]))
    if kind == "send":
        frame = {
            "action": "send",
            "message": draw(st.one_of(nasty_text, nasty_value)),
            "model": draw(models),
            "system_prompt": draw(st.one_of(nasty_text, st.none())),
            "conversation": draw(st.one_of(st.just(""), st.uuids().map(str), nasty_scalar)),
        }
    elif kind == "watch":
        frame = {"action": "watch", "message_id": draw(nasty_value), "after": draw(nasty_value)}
    elif kind == "stop":
        frame = {"action": "stop", "conversation": draw(nasty_value)}
    else:
        frame = draw(st.dictionaries(st.text(max_size=10), nasty_value, max_size=5))
        frame["action"] = draw(actions)
    frame["headers"] = {"HX-Request": "true"}
    return json.dumps(frame, allow_nan=True)


def is_json_object(raw: str) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def expected_text(frame: dict) -> str | None:
    """The text a valid new-conversation send stores, or None if the send must be refused."""
    if frame.get("action", "send") not in ("send", "", None) or frame.get("model") != "demo:demo":
        return None
    if frame.get("conversation") not in ("", None):
        return None  # a random id is someone else's or nobody's: 404
    message, prompt = frame.get("message"), frame.get("system_prompt")
    if not isinstance(message, str | int | float) or isinstance(message, bool):
        return None
    if prompt is not None and not isinstance(prompt, str):
        return None
    if prompt and len(text_clean(prompt).strip()) > MAX_CHARS:
        return None
    text = text_clean(str(message)).strip()
    if not has_visible(text) or len(text) > MAX_CHARS:
        return None
    return text


# Not thread-sensitive: the test's own reads must never queue behind (or be mistaken for a
# nested call of) the app's thread-sensitive work between Hypothesis examples.
@sync_to_async(thread_sensitive=False)
def new_session() -> tuple[str, str]:
    visitor_id = uuid.uuid4().hex
    session = SessionStore()
    session[VISITOR_SESSION_KEY] = visitor_id
    session.create()
    return f"sessionid={session.session_key}", visitor_id


@sync_to_async(thread_sensitive=False)
def stored_texts(visitor_id: str) -> list[str]:
    return list(
        Message.objects.filter(role="user", conversation__visitor_id=visitor_id)
        .order_by("id")
        .values_list("content", flat=True)
    )


@pytest.fixture
def fuzz_settings(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = MAX_CHARS
    settings.CHAT_MAX_SYSTEM_PROMPT_CHARS = MAX_CHARS
    settings.CHAT_WATCH_RATE_PER_MINUTE = 10_000
    return settings


STARTED = re.compile(r'data-role="user"[^>]*data-message-id="\d+"')


@settings(
    max_examples=WS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(frames=st.lists(ws_frames(), min_size=1, max_size=FRAMES_PER_EXAMPLE))
async def test_websocket_frames_never_break_the_socket_or_lose_a_message(
    frames, fuzz_settings, log_watch
):
    cookie, visitor_id = await new_session()
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"cookie", cookie.encode()),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected
    expected: list[str] = []
    closed = None
    for raw in frames:
        await communicator.send_to(text_data=raw)
        if not is_json_object(raw):
            # Not a JSON object at all: the socket is closed as a bad frame (4400), never 1011.
            output = await communicator.receive_output(WAIT)
            while output["type"] != "websocket.close":
                output = await communicator.receive_output(WAIT)
            closed = output.get("code")
            break
        frame = json.loads(raw)
        text = expected_text(frame)
        if text is not None:
            expected.append(text)
            # Its started fragment comes back before anything else this socket is sent for it.
            while True:
                output = await communicator.receive_output(WAIT)
                assert output["type"] == "websocket.send", output
                if STARTED.search(output.get("text", "")):
                    break
    else:
        # Everything sent was handled: a last valid send proves the socket is still serving.
        await communicator.send_to(
            text_data=json.dumps({"action": "send", "message": "sentinel", "model": "demo:demo"})
        )
        expected.append("sentinel")
        while True:
            output = await communicator.receive_output(WAIT)
            assert output["type"] == "websocket.send", output
            if STARTED.search(output.get("text", "")) and "sentinel" in output["text"]:
                break
    await communicator.disconnect()
    assert closed in (None, 4400)
    # Replies are jobs: wait for them so the next example starts clean.
    from chat.replies.registry import live_jobs

    for job in live_jobs():
        await job
    assert await stored_texts(visitor_id) == expected
    assert not log_watch.bad, [r.getMessage() for r in log_watch.bad]


@st.composite
def form_posts(draw) -> dict:
    fields = {
        "message": draw(nasty_text.filter(lambda t: "\ud800" not in t)),
        "model": draw(models),
        "system_prompt": draw(st.text(max_size=20)),
        "conversation": draw(st.sampled_from(["", "nope", str(uuid.uuid4()), "1" * 200])),
        "action": draw(st.sampled_from(["send", "send", "stop", "", "other"])),
    }
    return {
        "fields": fields,
        "htmx": draw(st.booleans()),
        "charset": draw(st.sampled_from([None, None, "utf-8", "latin-1", "bogus-enc"])),
    }


@settings(
    max_examples=POST_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(post=form_posts())
async def test_form_posts_never_500_and_keep_every_accepted_message(post, fuzz_settings, log_watch):
    cookie, visitor_id = await new_session()
    client = AsyncClient(raise_request_exception=False)
    client.cookies.load(cookie)
    from urllib.parse import urlencode

    content_type = "application/x-www-form-urlencoded"
    if post["charset"]:
        content_type += f"; charset={post['charset']}"
    headers = {"HX-Request": "true"} if post["htmx"] else {}
    # generic(): post() would encode the body in the declared charset itself. Each request in
    # its own thread-sensitive context, as Daphne gives each request, so no example's sync work
    # can be taken for a nested call of another's (asgiref's "would deadlock").
    async with ThreadSensitiveContext():
        response = await client.generic(
            "POST",
            "/streaming-demo/messages",
            data=urlencode(post["fields"]).encode(),
            content_type=content_type,
            headers=headers,
        )
    assert response.status_code < 500, response.content[:500]
    fields = post["fields"]
    accepted = response.status_code in (200, 302) and fields["action"] != "stop"
    stored = await stored_texts(visitor_id)
    if accepted and post["charset"] in (None, "utf-8"):
        assert stored == [text_clean(fields["message"]).strip()]
    else:
        assert stored == []
    from chat.replies.registry import live_jobs

    for job in live_jobs():
        await job
    assert not log_watch.bad, [r.getMessage() for r in log_watch.bad]
