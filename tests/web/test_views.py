from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client

from chat.conversations.limits import reader_acquire, reader_slots
from chat.conversations.reads import Visitor
from chat.models import Conversation, Message
from chat.providers.demo import demo_reply
from chat.replies import start as services
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


def saved_reply(page_visitor, client, text: str, **fields):
    """This client's conversation with one reply, saved with `fields` (e.g. a finished state)."""
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text=text, model_choice="demo:demo"
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(**fields)
    return started


# --- Pages -----------------------------------------------------------------------------------


def test_root_leads_to_the_demo(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/streaming-demo"


def test_page_offers_only_configured_models(client, settings):
    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = "sk-ant-secret-value"
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]

    html = client.get("/streaming-demo").content.decode()

    assert 'value="demo:demo"' in html
    assert 'value="anthropic:claude-haiku-4-5"' in html
    assert "openai:" not in html
    assert "sk-ant-secret-value" not in html  # keys never reach the browser


def test_page_shows_the_conversation_with_stats(client, page_visitor):
    started = saved_reply(
        page_visitor,
        client,
        "Stats please",
        status="complete",
        ended_reason="completed",
        content="**Done**",
        input_tokens=12,
        output_tokens=34,
        ttft_ms=420,
        tokens_per_second=31.5,
        cost_microusd=1234,
        usage_source="provider",
    )

    html = client.get(f"/streaming-demo/c/{started.conversation.pk}").content.decode()

    assert 'data-role="user"' in html and 'data-role="assistant"' in html
    assert 'data-status="complete"' in html
    assert "<strong>Done</strong>" in html
    for figure in ("0.42 s to first token", "31.5 tok/s", "12 in · 34 out", "$0.0012"):
        assert figure in html
    assert "Stats please" in html  # in the sidebar and the title


def test_a_streaming_reply_renders_with_its_offset(client, page_visitor):
    started = saved_reply(page_visitor, client, "Half way", content="Partial <text>", stream_seq=7)

    html = client.get(f"/streaming-demo/c/{started.conversation.pk}").content.decode()

    assert 'data-status="streaming"' in html
    assert '<span data-seq="7">Partial &lt;text&gt;</span>' in html
    assert (
        f'data-events-url="/streaming-demo/replies/{started.assistant_message.pk}/events"' in html
    )


def test_a_reply_whose_worker_died_shows_ended_and_the_page_only_asks_the_writer(
    client, page_visitor, monkeypatch
):
    # The page is a reader: the reply it finds abandoned is ended by the reaper on the one
    # writer thread, as every reply write is, and then shown as it ended.
    import threading
    from datetime import timedelta

    from django.utils import timezone

    from chat.web import views

    started = saved_reply(
        page_visitor, client, "Abandoned", content="Partial", stream_seq=3,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    threads: list[str] = []
    real_reap = views.reply_reap_stale

    def recorded(**kwargs):
        threads.append(threading.current_thread().name)
        return real_reap(**kwargs)

    monkeypatch.setattr(views, "reply_reap_stale", recorded)

    html = client.get(f"/streaming-demo/c/{started.conversation.pk}").content.decode()

    assert threads == ["reply-writer"]
    assert 'data-status="streaming"' not in html
    reply = Message.objects.get(pk=started.assistant_message.pk)
    assert (reply.ended_reason, reply.content) == (Message.EndedReason.INTERRUPTED, "Partial")


def test_markdown_is_sanitised(client, page_visitor):
    started = saved_reply(
        page_visitor,
        client,
        "xss",
        status="complete",
        content=(
            "<img src=x onerror=alert(1)> [link](javascript:alert(1)) "
            "![tracker](https://example.com/t.png)\n\n```python\nx = 1\n```"
        ),
    )

    html = client.get(f"/streaming-demo/c/{started.conversation.pk}").content.decode()
    reply = html[html.index('data-role="assistant"') :]

    assert not re.search(r"<img[^>]*onerror", reply)
    assert 'href="javascript:' not in reply
    assert "&lt;img src=x onerror=alert(1)&gt;" in reply  # shown as text, inert
    assert "<img" not in reply  # a reply cannot make the browser fetch anything by itself
    assert (
        '<a href="https://example.com/t.png" target="_blank" rel="noopener noreferrer nofollow">'
        "tracker</a>" in reply
    )
    assert '<pre tabindex="0"><code class="language-python">' in reply
    assert '<span class="n">x</span>' in reply  # highlighted by Pygments


def test_someone_elses_conversation_is_404(client, other_visitor):
    started = services.reply_start(
        visitor=other_visitor, conversation_id=None, text="secret", model_choice="demo:demo"
    )
    assert client.get(f"/streaming-demo/c/{started.conversation.pk}").status_code == 404
    assert (
        client.get(f"/streaming-demo/replies/{started.assistant_message.pk}/events").status_code
        == 404
    )


def test_sign_in_can_be_required(client, settings):
    settings.CHAT_REQUIRE_LOGIN = True
    response = client.get("/streaming-demo")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_signing_in_keeps_the_anonymous_conversations(client, page_visitor):
    visitor = page_visitor(client)
    started = services.reply_start(
        visitor=visitor, conversation_id=None, text="before login", model_choice="demo:demo"
    )
    User.objects.create_user("ada", password="a-long-enough-password")

    client.post("/accounts/login/", {"username": "ada", "password": "a-long-enough-password"})

    conversation = Conversation.objects.get(pk=started.conversation.pk)
    assert conversation.user.username == "ada"
    assert client.get(f"/streaming-demo/c/{conversation.pk}").status_code == 200


# --- The composer POST ------------------------------------------------------------------------


async def test_htmx_post_returns_the_new_bubbles(async_client, apage_visitor):
    await apage_visitor(async_client)

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "Over SSE", "model": "demo:demo", "conversation": ""},
        headers=HTMX,
    )

    html = response.content.decode()
    conversation = await Conversation.objects.aget()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert 'hx-swap-oob="beforeend:#messages"' in html
    assert 'data-role="user"' in html and "Over SSE" in html
    assert 'data-role="assistant" data-status="streaming"' in html
    assert f'value="{conversation.pk}" hx-swap-oob="true"' in html
    assert 'hx-swap-oob="afterend:#group-today"' in html
    # The new conversation's ⋯ menu (rename, export, delete) arrives with it.
    assert 'id="conversation-actions" class="conversation-actions-slot" hx-swap-oob="true"' in html
    assert f"/streaming-demo/c/{conversation.pk}/rename" in html
    # Nothing follows in this response: the page asks for the reply itself.
    assert "data-streamed" not in html
    await _wait_idle()


async def test_htmx_post_with_bad_input_is_a_400_with_the_reason(async_client, apage_visitor):
    await apage_visitor(async_client)

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "x" * 9000, "model": "demo:demo"},
        headers=HTMX,
    )

    assert response.status_code == 400
    assert "the limit is 8,000" in response.content.decode()


async def test_without_javascript_the_form_shows_the_finished_reply(async_client, apage_visitor):
    await apage_visitor(async_client)

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "No JS here", "model": "demo:demo", "conversation": ""},
    )

    conversation = await Conversation.objects.aget()
    assert response.status_code == 302
    assert response["Location"] == f"/streaming-demo/c/{conversation.pk}"
    page = (await async_client.get(response["Location"])).content.decode()
    assert 'data-status="complete"' in page
    assert "Here is" in page or "Let" in page or "Short answer" in page or "Good question" in page


async def test_without_javascript_errors_rerender_the_page(async_client, apage_visitor):
    await apage_visitor(async_client)

    response = await async_client.post(
        "/streaming-demo/messages", {"action": "send", "message": "  ", "model": "demo:demo"}
    )

    assert response.status_code == 400
    assert "Type a message first." in response.content.decode()


async def test_stop_over_http(async_client, settings, apage_visitor):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    visitor = await apage_visitor(async_client)
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="stop via http", model_choice="demo:demo"
    )
    await asyncio.sleep(0.3)

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "stop", "conversation": str(started.conversation.pk)},
        headers=HTMX,
    )
    await _wait_idle()

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert response.status_code == 204
    assert message.ended_reason == Message.EndedReason.STOPPED


async def test_stop_someone_elses_reply_is_404(
    async_client, other_visitor, settings, apage_visitor
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    await apage_visitor(async_client)
    started = await services.areply_start(
        visitor=other_visitor, conversation_id=None, text="not yours", model_choice="demo:demo"
    )

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "stop", "conversation": str(started.conversation.pk)},
        headers=HTMX,
    )
    await services.reply_stop(visitor=other_visitor, conversation_id=str(started.conversation.pk))
    await _wait_idle()

    assert response.status_code == 404


async def test_regenerate_over_htmx_replaces_the_reply(async_client, apage_visitor, settings):
    visitor = await apage_visitor(async_client)
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="again please", model_choice="demo:demo"
    )
    await _wait_idle()

    # The new version takes a second or two, so the redrawn list shows it streaming however
    # busy the machine (at the suite's instant demo speed it could finish before the redraw).
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    response = await async_client.post(
        f"/streaming-demo/replies/{started.assistant_message.pk}/regenerate", headers=HTMX
    )
    await _wait_idle()

    html = response.content.decode()
    assert response.status_code == 200
    # The list is redrawn with the new version; the old one is version 1 of 2.
    assert 'hx-swap-oob="innerHTML:#messages"' in html
    assert f'id="msg-{started.assistant_message.pk}"' not in html
    assert 'data-status="streaming"' in html
    assert '<span class="version-count">2/2</span>' in html


async def _wait_idle():
    await asyncio.gather(*live_jobs())


# --- The SSE transport --------------------------------------------------------------------------


@pytest.fixture
def start_reply(anonymous_session):
    async def start(text: str, model: str = "demo:demo") -> tuple[str, int]:
        """A new anonymous visitor's reply, started: (their cookie header, the reply's id)."""
        cookie, visitor_id = await anonymous_session()
        visitor = Visitor(user=AnonymousUser(), visitor_id=visitor_id)
        started = await services.areply_start(
            visitor=visitor, conversation_id=None, text=text, model_choice=model
        )
        return cookie, started.assistant_message.pk

    return start


@pytest.fixture
def sse_reply(start_reply):
    async def start(text: str, tokens_per_second: float, settings):
        settings.CHAT_DEMO_TOKENS_PER_SECOND = tokens_per_second
        return await start_reply(text)

    return start


async def test_sse_streams_the_reply_with_ids_and_headers(settings, deltas, sse_reply, sse_stream):
    cookie, message_id = await sse_reply("sse please", 300, settings)
    sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)

    start = await sse.open()
    headers = {name.lower(): value for name, value in start["headers"]}
    assert start["status"] == 200
    assert headers[b"content-type"] == b"text/event-stream", headers
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert (await sse.event()) == {"retry": "1000"}

    pieces, final = [], None
    while final is None:
        event = await sse.event()
        assert event["id"].isdigit(), "every event carries an id"
        if "<article" in event["data"]:
            final = event
        else:
            pieces += deltas(event["data"])
    await sse.close()

    assert len(pieces) > 1
    assert "".join(t for _, t in pieces) == demo_reply("sse please")
    assert 'data-status="complete"' in final["data"]


async def test_sse_resumes_from_last_event_id(settings, deltas, sse_reply, sse_stream):
    cookie, message_id = await sse_reply("resume over sse", 60, settings)
    first = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
    await first.open()
    await first.event()  # retry
    seen = []
    while len(seen) < 3:
        event = await first.event()
        seen += deltas(event["data"])
        last_id = event["id"]
    await first.close()  # the browser drops the connection

    second = sse_stream(
        f"/streaming-demo/replies/{message_id}/events", cookie, last_event_id=last_id
    )
    await second.open()
    await second.event()
    rest = []
    while True:
        event = await second.event(timeout=30)
        assert event, "the stream ended before the finished reply"
        if "<article" in event["data"]:
            break
        rest += deltas(event["data"])
    await second.close()

    assert rest[0][0] > int(last_id)
    assert "".join(t for _, t in seen + rest) == demo_reply("resume over sse")


async def test_sse_sends_a_heartbeat_comment_while_waiting(
    settings, openai_upstream, sse_stream, start_reply
):
    settings.CHAT_SSE_PING_SECONDS = 0.2
    openai_upstream.script(text="slow model", chunks=2, stall_after=1)
    cookie, message_id = await start_reply("wait", "openai:gpt-4.1-mini")
    sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
    await sse.open()

    raw = ""
    while ": ping" not in raw:
        chunk = await sse.app.receive_output(15)  # generous: a busy machine is slow, not wrong
        raw += chunk["body"].decode()
    await sse.close()
    openai_upstream.release()
    await _wait_idle()

    assert "slow " in raw or "data:" in raw


async def test_sse_client_going_away_does_not_stop_the_reply(settings, sse_reply, sse_stream):
    cookie, message_id = await sse_reply("keep going", 100, settings)
    sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
    await sse.open()
    await sse.event()
    await sse.event()
    await sse.close()

    await _wait_idle()
    message = await Message.objects.aget(pk=message_id)
    assert message.status == Message.Status.COMPLETE
    assert message.content == demo_reply("keep going")


def _send_form(text: str) -> dict[str, str]:
    """The SSE page's composer form: a send whose answer streams the reply."""
    return {"action": "send", "message": text, "model": "demo:demo", "stream": "1"}


async def test_a_streamed_send_answers_with_its_bubbles_then_the_reply(
    settings, anonymous_session, deltas, sse_stream
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 300
    cookie, _visitor_id = await anonymous_session()
    sse = sse_stream("/streaming-demo/messages", cookie, form=_send_form("one request"))

    start = await sse.open()
    headers = {name.lower(): value for name, value in start["headers"]}
    started = await sse.event()
    released = await sse.event()
    assert (await sse.event()) == {"retry": "1000"}
    ids, pieces, final = [], [], None
    while final is None:
        event = await sse.event()
        ids.append(int(event["id"]))
        if "<article" in event["data"]:
            final = event
        else:
            pieces += deltas(event["data"])
    await sse.close()

    assert start["status"] == 200
    assert headers[b"content-type"] == b"text/event-stream", headers
    assert headers[b"x-accel-buffering"] == b"no"
    # First the new bubbles (the same fragment as without `stream`), the reply's marked as
    # followed by this response so that the page does not ask for it again.
    assert set(started) == {"data"}
    assert 'data-role="user"' in started["data"] and "one request" in started["data"]
    assert 'hx-swap-oob="afterend:#group-today"' in started["data"]
    assert re.search(r'<article [^>]*data-role="assistant"[^>]*data-streamed', started["data"])
    assert started["data"].count("data-streamed") == 1
    # Then the form is released (Stop can be sent), then the reply as the events view sends it.
    assert released == {"event": "hx:release"}
    assert ids == sorted(set(ids)) and len(pieces) > 1
    assert "".join(t for _, t in pieces) == demo_reply("one request")
    assert 'data-status="complete"' in final["data"]


@pytest.mark.parametrize("refusal", ["bad input", "streaming cap"])
async def test_a_refused_streamed_send_is_answered_as_any_refused_send(
    async_client, settings, refusal, apage_visitor
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    visitor = await apage_visitor(async_client)
    form = _send_form("refused")
    if refusal == "bad input":
        form["message"] = "x" * 9000
    else:
        settings.CHAT_MAX_STREAMING_PER_PERSON = 1
        started = await services.areply_start(
            visitor=visitor, conversation_id=None, text="busy", model_choice="demo:demo"
        )

    streamed = await async_client.post("/streaming-demo/messages", form, headers=HTMX)
    del form["stream"]
    plain = await async_client.post("/streaming-demo/messages", form, headers=HTMX)
    if refusal == "streaming cap":
        await services.reply_stop(visitor=visitor, conversation_id=str(started.conversation.pk))
    await _wait_idle()

    assert streamed.status_code == plain.status_code == {"bad input": 400}.get(refusal, 429)
    assert streamed["Content-Type"] == plain["Content-Type"]
    assert streamed.get("Retry-After") == plain.get("Retry-After")
    assert streamed.content == plain.content and b'id="composer-error"' in streamed.content


async def test_a_streamed_send_whose_client_goes_away_leaves_the_reply_running(
    settings, anonymous_session, deltas, sse_stream
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 100
    cookie, visitor_id = await anonymous_session()
    visitor = Visitor(user=AnonymousUser(), visitor_id=visitor_id)
    sse = sse_stream("/streaming-demo/messages", cookie, form=_send_form("keep going alone"))
    await sse.open()
    for _ in range(3):  # the bubbles, the release, the retry
        await sse.event()
    assert deltas((await sse.event())["data"])
    assert reader_slots.count(visitor.key) == 1  # the response is the reply's reader

    await sse.close()

    assert reader_slots.count(visitor.key) == 0
    await _wait_idle()
    message = await Message.objects.aget(role=Message.Role.ASSISTANT)
    assert message.status == Message.Status.COMPLETE
    assert message.content == demo_reply("keep going alone")


async def test_a_streamed_send_without_a_free_reader_slot_sends_the_bubbles_alone(
    async_client, settings, apage_visitor
):
    # The reply has started all the same: the page follows it over GET, as after a send
    # without `stream`, and that request says why it has to wait.
    settings.CHAT_MAX_READERS_PER_PERSON = 1
    visitor = await apage_visitor(async_client)
    other_tab = reader_acquire(visitor)
    try:
        response = await async_client.post(
            "/streaming-demo/messages", _send_form("no slot"), headers=HTMX
        )
    finally:
        other_tab.release()
    await _wait_idle()

    html = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert 'data-role="assistant" data-status="streaming"' in html
    assert "data-streamed" not in html


async def test_regenerate_someone_elses_reply_is_404(async_client, other_visitor, apage_visitor):
    await apage_visitor(async_client)
    started = await services.areply_start(
        visitor=other_visitor, conversation_id=None, text="theirs", model_choice="demo:demo"
    )
    await _wait_idle()

    response = await async_client.post(
        f"/streaming-demo/replies/{started.assistant_message.pk}/regenerate", headers=HTMX
    )

    assert response.status_code == 404
    assert not await Message.objects.filter(superseded=True).aexists()


async def test_carriage_returns_cannot_break_sse_framing(
    openai_upstream, deltas, sse_stream, start_reply
):
    # A model can be steered into emitting "\r"; on SSE it would end a line and could forge
    # `id:` or `event:` fields. Carriage returns become line breaks (chat.conversations.text),
    # so none reaches the stream, and the text arrives as the saved reply has it.
    text = "line one\rid: 0\rlost words\revent: done\r\nend"
    openai_upstream.script(text=text, chunks=3, delay=0.05)
    cookie, message_id = await start_reply("cr", "openai:gpt-4.1-mini")
    sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
    await sse.open()

    raw = ""
    while "<article" not in raw:
        raw += (await sse.app.receive_output(5))["body"].decode()
    await sse.close()

    assert "\r" not in raw
    body = raw[: raw.index("<article")]
    expected = "line one\nid: 0\nlost words\nevent: done\nend"
    assert "".join(t for _, t in deltas(body.replace("\ndata: ", "\n"))) == expected
    assert (await Message.objects.aget(pk=message_id)).content == expected


# --- The model picker ------------------------------------------------------------------------


def test_a_configured_provider_is_the_default_over_the_demo(client, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["llama3.2"]
    settings.OPENAI_PROVIDER_NAME = "Ollama"
    settings.CHAT_DEFAULT_MODEL = ""

    html = client.get("/streaming-demo").content.decode()

    assert re.search(r'<option value="openai:llama3.2" selected>llama3.2 · Ollama</option>', html)
    assert '<option value="demo:demo">Demo (offline)</option>' in html


def test_chat_default_model_still_wins(client, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["gpt-4.1-mini"]
    settings.CHAT_DEFAULT_MODEL = "demo:demo"

    html = client.get("/streaming-demo").content.decode()

    assert '<option value="demo:demo" selected>' in html
    assert '<option value="openai:gpt-4.1-mini">gpt-4.1-mini · OpenAI</option>' in html


def test_anthropic_models_carry_their_display_name(client, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    settings.ANTHROPIC_PROVIDER_NAME = "Gateway"
    settings.CHAT_DEFAULT_MODEL = ""

    html = client.get("/streaming-demo").content.decode()

    option = '<option value="anthropic:claude-haiku-4-5" selected>'
    assert option + "claude-haiku-4-5 · Gateway</option>" in html


@pytest.mark.parametrize("charset", ["latin-1", "bogus-encoding"])
def test_a_form_in_another_charset_is_a_400_not_a_500(client, charset):
    client.get("/streaming-demo")
    response = client.generic(
        "POST",
        "/streaming-demo/messages",
        data=b"message=caf%E9&model=demo%3Ademo",
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
        headers=HTMX,
    )
    assert response.status_code == 400
    assert b"UTF-8" in response.content
    assert not Message.objects.exists()


def test_viewing_the_page_writes_no_session_row(client, page_visitor):
    from django.contrib.sessions.models import Session

    for _ in range(25):
        Client().get("/streaming-demo")  # cookie-less visitors: bots, link previews, floods
    assert Session.objects.count() == 0

    # A visitor who sends still keeps their conversation, through the signed visitor cookie.
    started = saved_reply(page_visitor, client, "mine")
    assert Session.objects.count() == 0
    page = client.get(f"/streaming-demo/c/{started.conversation.pk}")
    assert page.status_code == 200 and "mine" in page.content.decode()


def test_a_forged_visitor_cookie_is_not_believed(client, other_visitor):
    from chat.web.visitors import VISITOR_COOKIE

    theirs = services.reply_start(
        visitor=other_visitor, conversation_id=None, text="private", model_choice="demo:demo"
    )
    client.cookies[VISITOR_COOKIE] = other_visitor.visitor_id  # unsigned: a guess
    assert client.get(f"/streaming-demo/c/{theirs.conversation.pk}").status_code == 404


class _OpenConnections:
    """Every database connection the app opens, by the thread that opened it, so a test can ask
    which are still open."""

    def __init__(self) -> None:
        import weakref

        self.opened: list[tuple[str, weakref.ref]] = []

    def __call__(self, sender, connection, **kwargs) -> None:
        import threading
        import weakref

        self.opened.append((threading.current_thread().name, weakref.ref(connection)))

    def held_by_requests(self) -> list[str]:
        return [
            name
            for name, ref in self.opened
            if name.startswith("request") and (wrapper := ref()) and wrapper.connection is not None
        ]


@pytest.mark.parametrize("streamed_send", [False, True])
async def test_an_event_stream_holds_no_database_connection_while_it_lasts(
    settings, streamed_send, anonymous_session, sse_stream, start_reply
):
    # A stream lasts as long as its reply; its request's connection would sit idle all that
    # time (with 100 SSE readers, PostgreSQL's 100 connections were used up).
    from django.db.backends.signals import connection_created

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 20
    opened = _OpenConnections()
    connection_created.connect(opened)
    try:
        if streamed_send:
            cookie, _visitor_id = await anonymous_session()
            sse = sse_stream("/streaming-demo/messages", cookie, form=_send_form("hold nothing"))
        else:
            cookie, message_id = await start_reply("hold nothing")
            sse = sse_stream(f"/streaming-demo/replies/{message_id}/events", cookie)
        await sse.open()
        await sse.event()
        await sse.event()  # streaming now: the request's checks are done
        # Its reads ran on the database threads (chat.db), which keep theirs; whatever its own
        # thread opened (the session, the user) was given back before the first event.
        assert opened.held_by_requests() == []
        await sse.close()
    finally:
        connection_created.disconnect(opened)
    await _wait_idle()
