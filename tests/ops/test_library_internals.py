"""The library internals the app reaches (chat/adapters/) are still there. When an upgrade of a
pinned library moves one, this fails here, by name, instead of a feature going quietly wrong:
slow readers no longer dropped, slots never given back, a stop listener that cannot be cancelled.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
from django.http import StreamingHttpResponse

from chat.adapters.daphne_transport import aborter, buffered_bytes, transport_of
from chat.adapters.django_response import on_close
from chat.adapters.redis_pubsub import abort_socket


def test_twisted_transports_keep_their_send_buffer_where_the_adapter_reads_it():
    from twisted.internet.abstract import FileDescriptor
    from twisted.internet.tcp import Connection

    assert issubclass(Connection, FileDescriptor)
    transport = FileDescriptor()
    assert buffered_bytes(transport) == 0
    # What FileDescriptor.write does with bytes it cannot send yet.
    transport._tempDataBuffer.append(b"x" * 100)
    transport._tempDataLen += 100
    transport.dataBuffer, transport.offset = b"y" * 50, 20
    assert buffered_bytes(transport) == 130
    assert callable(aborter(Connection.__new__(Connection)))
    assert buffered_bytes(object()) == 0


def test_daphne_still_passes_its_protocol_as_the_send_partial():
    import inspect

    from daphne.server import Server

    # Daphne builds `send` as functools.partial(self.handle_reply, protocol).
    assert "partial(self.handle_reply, protocol)" in inspect.getsource(Server.create_application)

    class Protocol:
        transport = object()

    send = functools.partial(lambda protocol, message: None, Protocol())
    assert transport_of(send) is Protocol.transport
    assert transport_of(lambda message: None) is None


def test_django_calls_a_responses_closers_when_it_closes_it():
    closed: list[str] = []
    response = StreamingHttpResponse(iter([b"event"]))
    on_close(response, lambda: closed.append("released"))
    response.close()
    assert closed == ["released"]


@pytest.mark.redis
async def test_aborting_a_pubsub_socket_ends_a_read_blocked_on_it(redis_url):
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("chatsite:test-abort")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert pubsub.connection._writer.transport is not None
    reading = asyncio.ensure_future(pubsub.get_message(timeout=None))
    await asyncio.sleep(0.1)
    abort_socket(pubsub)
    with pytest.raises((ConnectionError, OSError, redis.ConnectionError)):
        await asyncio.wait_for(reading, 5)
    await pubsub.aclose()
    await client.aclose()


def test_a_send_on_a_closed_websocket_still_raises_what_the_consumer_drops():
    import inspect

    from autobahn.exception import Disconnected
    from autobahn.websocket.protocol import WebSocketProtocol

    from chat.adapters.daphne_transport import SEND_ON_CLOSED_ERRORS

    # Daphne's WebSocket protocol is autobahn's: a frame sent after the client's close raises
    # Disconnected until the consumer has handled the close (chat/web/consumers.deliver).
    assert "raise Disconnected" in inspect.getsource(WebSocketProtocol.sendMessage)
    assert Disconnected in SEND_ON_CLOSED_ERRORS
    assert OSError in SEND_ON_CLOSED_ERRORS  # what the ASGI spec asks of other servers


def test_texmath_still_builds_parser_rules_from_rule_dicts_with_pre_and_post():
    import re

    from markdown_it import MarkdownIt

    from chat.adapters.texmath_rules import add_texmath_rules

    md = MarkdownIt("commonmark")
    seen: list[str] = []
    inline = {
        "name": "t_inline",
        "rex": re.compile(r"^\\\((.+?)\\\)"),
        "tag": "\\(",
        "pre": lambda src, begin: seen.append("pre") or True,
    }
    block = {
        "name": "t_block",
        "rex": re.compile(r"^\\\[([\s\S]+?)\\\]", re.MULTILINE),
        "tag": "\\[",
        "post": lambda src, end: seen.append("post") or src[end] == "]",
    }
    assert add_texmath_rules(md, [inline], [block])
    tokens = md.parse("\\[\nE\n\\]\n\na \\(x\\) b")
    assert [(t.type, t.content) for t in tokens if t.type == "t_block"] == [("t_block", "\nE\n")]
    children = next(t for t in tokens if t.type == "inline" and "a" in t.content).children
    assert [(c.type, c.content) for c in children or [] if c.type == "t_inline"] == [
        ("t_inline", "x")
    ]
    assert set(seen) == {"pre", "post"}


def test_twisted_still_lets_a_request_class_skip_parsing_a_posts_form_body():
    """chatsite/serving/daphne_server.py turns Twisted's own parse of a POST's form body off
    (it held the event loop 0.2-0.3 s for a 10 MB upload, and Daphne never reads it)."""
    import inspect

    from twisted.web import http

    assert "self._parsePOSTFormSubmission = " in inspect.getsource(http.Request.__init__)
    assert "self._parsePOSTFormSubmission" in inspect.getsource(http.Request.requestReceived)
