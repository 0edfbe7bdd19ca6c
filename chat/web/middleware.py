"""Request checks that belong before any view runs, and the bases of the site's own middleware."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin

from chat.web.visitors import visitor_cookie_apply

# The page uses none of these browser features: no page of the site (nor anything framed or
# injected into one) may ask for them.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "browsing-topics", "camera", "display-capture", "geolocation",
        "gyroscope", "magnetometer", "microphone", "midi", "payment", "usb",
    )
)  # fmt: skip

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _charset_refusal(request: HttpRequest) -> HttpResponse | None:
    """Forms are read as UTF-8 only (Django refuses other charsets for urlencoded bodies and
    fails on unknown ones); say so with a 400 instead of failing inside a view."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    if request.content_type not in _FORM_TYPES:
        return None
    charset = (request.content_params or {}).get("charset")
    if not charset:
        return None
    try:
        if codecs.lookup(charset).name == "utf-8":
            return None
    except LookupError:
        pass
    return HttpResponseBadRequest(
        "Forms must be sent as UTF-8.", content_type="text/plain; charset=utf-8"
    )


class BothStacksMiddleware:
    """A middleware for the sync stack (WSGI, the test client) and the async one alike. Marked as a
    coroutine function when what follows it is async, so Django awaits it rather than holding a
    thread for the whole request. Subclasses answer in `sync_call` and `async_call`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.async_call(request)
        return self.sync_call(request)

    def sync_call(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError

    async def async_call(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError


class InlineHooksMiddleware(MiddlewareMixin):
    """A `MiddlewareMixin` whose `process_request` and `process_response` never block (no I/O),
    so in async mode they run on the event loop: Django's own `__acall__` sends each hook to a
    worker thread in case it blocks. Sync mode is `MiddlewareMixin`'s, which calls them directly."""

    async def __acall__(self, request: HttpRequest) -> Any:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[misc]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class FormCharsetMiddleware(InlineHooksMiddleware):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        return _charset_refusal(request)


class VisitorCookieMiddleware(InlineHooksMiddleware):
    """Sets (or drops) the anonymous visitor's signed cookie that chat.web.visitors asked for."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        visitor_cookie_apply(request, response)
        return response


class PrivacyHeadersMiddleware(InlineHooksMiddleware):
    """Permissions-Policy on every response Django makes, and `Cache-Control: private,
    no-store` on every one whose view did not choose its own caching: every page shows a
    person's conversations (the sidebar), an export or an API answer is one, and none may be
    kept by a shared cache or on the browser's disk. Views that choose keep their choice (the
    event streams' `no-cache`, the probes' `never_cache`, the keys page's `no-store`); static
    files (WhiteNoise, before this in the list) keep their long caching."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if "Cache-Control" not in response:
            patch_cache_control(response, private=True, no_store=True)
        return response
