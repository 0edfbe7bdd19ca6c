"""Request checks that belong before any view runs."""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.cache import patch_cache_control

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


class _Middleware:
    """Works in both stacks: `before` may answer instead of the view, `after` sees the response."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> None:
        pass

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self.get_response):
            return self._acall(request)
        response = self.before(request) or self.get_response(request)
        self.after(request, response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = self.before(request) or await self.get_response(request)
        self.after(request, response)
        return response


class FormCharsetMiddleware(_Middleware):
    def before(self, request: HttpRequest) -> HttpResponse | None:
        return _charset_refusal(request)


class VisitorCookieMiddleware(_Middleware):
    """Sets (or drops) the anonymous visitor's signed cookie that chat.web.visitors asked for."""

    def after(self, request: HttpRequest, response: HttpResponse) -> None:
        visitor_cookie_apply(request, response)


class PrivacyHeadersMiddleware(_Middleware):
    """Permissions-Policy on every response Django makes, and `Cache-Control: private,
    no-store` on every one whose view did not choose its own caching: every page shows a
    person's conversations (the sidebar), an export or an API answer is one, and none may be
    kept by a shared cache or on the browser's disk. Views that choose keep their choice (the
    event streams' `no-cache`, the probes' `never_cache`, the keys page's `no-store`); static
    files (WhiteNoise, before this in the list) keep their long caching."""

    def after(self, request: HttpRequest, response: HttpResponse) -> None:
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if "Cache-Control" not in response:
            patch_cache_control(response, private=True, no_store=True)
