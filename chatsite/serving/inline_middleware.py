"""Django's and django-csp's middleware, with their hooks run on the event loop.

Under ASGI, Django runs each `process_request` and `process_response` of a `MiddlewareMixin`
middleware in a worker thread (`sync_to_async`), in case it blocks. That is ~17 thread hops per
request for this middleware list: a trivial view cost 3.5 ms of CPU under ASGI against 0.3 ms
through the test client, most of it in hops and thread starts (docs/journal.md, the
second pass on the hot path).

The hooks below do no I/O: they read and set headers and cookies, resolve URLs and build lazy
objects. So they run inline. Two keep their thread where they may touch the database:
the session middleware's response hook when the session must be saved, and the messages
middleware (its storage can fall back to the session). Sync mode (WSGI, the test client) is
unchanged: `MiddlewareMixin.__call__` runs the hooks directly there already.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

from chat.web.middleware import InlineHooksMiddleware


class InlineSecurityMiddleware(InlineHooksMiddleware, SecurityMiddleware):
    pass


class InlineCSPMiddleware(InlineHooksMiddleware, CSPMiddleware):
    pass


class InlineCommonMiddleware(InlineHooksMiddleware, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(InlineHooksMiddleware, CsrfViewMiddleware):
    # Its process_view (reading the token from a parsed form) still runs through Django's
    # adapter: view hooks are collected and adapted by the handler, not by `__acall__`.
    pass


class InlineAuthenticationMiddleware(InlineHooksMiddleware, AuthenticationMiddleware):
    # process_request only sets lazy `request.user` / `request.auser`: no query until read.
    pass


class InlineXFrameOptionsMiddleware(InlineHooksMiddleware, XFrameOptionsMiddleware):
    pass


class InlineSessionMiddleware(SessionMiddleware):
    """Making the session store is lazy (no query); saving it is a write, so only a response
    that must save the session goes to a thread."""

    async def __acall__(self, request: HttpRequest) -> Any:
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]  # async mode
        session = request.session
        if session.modified or settings.SESSION_SAVE_EVERY_REQUEST:
            return await sync_to_async(self.process_response, thread_sensitive=True)(
                request, response
            )
        # Nothing to save: what is left is the Vary header and, for an emptied session, the
        # cookie's deletion. Neither queries.
        return self.process_response(request, response)
