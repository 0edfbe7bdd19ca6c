"""What transport tests share: sessions for anonymous visitors, ASGI scopes, reading fragments."""

from __future__ import annotations

import re
import uuid
from html import unescape

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore

from chat.conversations.reads import Visitor
from chat.web.visitors import VISITOR_SESSION_KEY

SEQ_TEXT = re.compile(r'<span data-seq="(\d+)">(.*?)</span>', re.S)


@sync_to_async
def anonymous_session() -> tuple[str, str]:
    """A saved session with a visitor id, as the page creates: (cookie header, visitor id)."""
    visitor_id = uuid.uuid4().hex
    session = SessionStore()
    session[VISITOR_SESSION_KEY] = visitor_id
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}", visitor_id


def deltas(fragment: str) -> list[tuple[int, str]]:
    """The (seq, text) pieces a delta fragment appends, unescaped."""
    return [(int(seq), unescape(text)) for seq, text in SEQ_TEXT.findall(fragment)]


def client_visitor_id(client) -> str:
    """The anonymous visitor id a test client's page visit was given (a signed cookie)."""
    from chat.web.visitors import VISITOR_COOKIE, visitor_id_from_scope

    # The cookie alone, as a socket without a session reads it.
    return visitor_id_from_scope(
        {"cookies": {VISITOR_COOKIE: client.cookies[VISITOR_COOKIE].value}}
    )


def http_scope(
    path: str, headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET"
) -> dict:
    """An ASGI HTTP scope (GET unless told) for `path` (with its query string), as Daphne
    builds it for a browser on the local address."""
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def asgi_get(application: object, path: str) -> int:
    """GET `path` from the ASGI application in-process, read the whole body; its status."""
    from asgiref.testing import ApplicationCommunicator

    app = ApplicationCommunicator(application, http_scope(path))
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(5)
    while (await app.receive_output(5)).get("more_body"):
        pass
    await app.wait(2)
    return int(start["status"])


def page_visitor(client) -> Visitor:
    """The anonymous visitor a test client becomes by opening the page."""
    client.get("/streaming-demo")
    return Visitor(user=AnonymousUser(), visitor_id=client_visitor_id(client))


async def apage_visitor(async_client) -> Visitor:
    """`page_visitor` for an async test client."""
    await async_client.get("/streaming-demo")
    return Visitor(user=AnonymousUser(), visitor_id=client_visitor_id(async_client))
