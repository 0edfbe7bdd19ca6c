"""The WebSocket handshake's origin check: the same rule Django's CSRF check applies to POSTs.

Channels' `AllowedHostsOriginValidator` compares host names only, so a page on another port or
scheme of the same host (`http://host:9999`) could open `/ws/chat/` with the visitor's cookies.
A socket that carries the session must be held to the rule `CsrfViewMiddleware._origin_verified`
applies to a POST: the Origin must equal the site's own origin (scheme, host and port, from the
Host header and the scheme as Django sees it, `SECURE_PROXY_SSL_HEADER` included), or be listed
in `CSRF_TRUSTED_ORIGINS` (where `https://*.example.com` admits every subdomain).

A handshake without an Origin is refused. Every browser sends one on a WebSocket handshake, so
its absence means a script or a tool, and those can send the site's origin like the benchmark
does; an exemption would only be a way around the check. (Django lets an Origin-less POST go on
to its Referer check; a handshake has no Referer to fall back on.)
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.utils.http import is_same_domain

Scope = dict[str, Any]


def _handshake_request(scope: Scope) -> ASGIRequest:
    # Read the handshake as the HTTP GET it is, so Host, ALLOWED_HOSTS, USE_X_FORWARDED_HOST and
    # SECURE_PROXY_SSL_HEADER mean exactly what they mean for every other request.
    http_scope = {
        **scope,
        "type": "http",
        "method": "GET",
        "scheme": "https" if scope.get("scheme") in ("wss", "https") else "http",
    }
    return ASGIRequest(http_scope, io.BytesIO())


def origin_verified(origin: str, *, site_origin: str | None) -> bool:
    """Whether `origin` may act for the site whose own origin is `site_origin` (None when the
    request named a host the site does not serve). Mirrors Django 5.2's CSRF origin check."""
    if site_origin is not None and origin == site_origin:
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in {trusted_origin for trusted_origin in trusted if "*" not in trusted_origin}:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, wildcard.netloc.lstrip("*"))
        for wildcard in (urlsplit(pattern) for pattern in trusted if "*" in pattern)
        if wildcard.scheme == parsed.scheme
    )


def handshake_origin_allowed(scope: Scope) -> bool:
    origins = [value for name, value in scope.get("headers", []) if name == b"origin"]
    if len(origins) != 1:
        return False  # none (not a browser) or several (ambiguous): refuse either way
    request = _handshake_request(scope)
    try:
        site_origin: str | None = f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        # Plain HTTP requests for a host the site does not serve are refused outright (400);
        # a handshake for one is refused too, whatever its Origin says.
        return False
    return origin_verified(origins[0].decode("latin1"), site_origin=site_origin)


class SameOriginValidator:
    """ASGI middleware: close a WebSocket handshake whose Origin is not the site's own, before
    it is accepted (Daphne answers the handshake with 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not handshake_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
