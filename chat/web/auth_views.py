"""Sign-in throttling for the site's sign-in page and the admin's.

Failed attempts are counted with django-ratelimit (in the cache, so every worker agrees when it
is Redis) under two keys: the submitted username, which stops a guesser spread over many
addresses, and the client IP (`chat.conversations.limits.request_client_ip`, which believes
X-Forwarded-For only from CHAT_TRUSTED_PROXIES), which stops one address trying many usernames.
Once either has CHAT_LOGIN_RATE_LIMIT / CHAT_LOGIN_IP_RATE_LIMIT failures in its window, every
further attempt — the right password included — gets a 429 with Retry-After and the wait in words
on the sign-in page, until the window ends. Only failures count: signing in normally never uses up
the budget.

The login views are sync, so django-ratelimit's sync API is fine here (unlike in the consumer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django_ratelimit.core import get_usage

from chat.conversations.limits import request_client_ip, wait_words

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponseBase]


def _keys(request: HttpRequest) -> list[tuple[str, str, str]]:
    """(group, key, rate) for each count an attempt belongs to."""
    keys = []
    username = str(request.POST.get("username", "")).strip().casefold()[:150]
    if settings.CHAT_LOGIN_RATE_LIMIT and username:
        keys.append(("login-username", f"user:{username}", settings.CHAT_LOGIN_RATE_LIMIT))
    ip = request_client_ip(request)
    if settings.CHAT_LOGIN_IP_RATE_LIMIT and ip:
        keys.append(("login-ip", f"ip:{ip}", settings.CHAT_LOGIN_IP_RATE_LIMIT))
    return keys


def _usage(group: str, key: str, rate: str, *, increment: bool) -> dict[str, Any] | None:
    return get_usage(
        HttpRequest(), group=group, key=lambda _g, _r: key, rate=rate, increment=increment
    )


def login_wait(request: HttpRequest) -> int | None:
    """Seconds until this attempt may be tried, if its username or IP has used up its failures."""
    waits = []
    for group, key, rate in _keys(request):
        usage = _usage(group, key, rate, increment=False)
        if usage and usage["count"] >= usage["limit"]:
            waits.append(max(1, int(usage["time_left"])))
    return max(waits, default=None)


def login_failed(request: HttpRequest) -> None:
    for group, key, rate in _keys(request):
        _usage(group, key, rate, increment=True)


def _refused(request: HttpRequest, *, status: int, message: str, retry_after: int) -> HttpResponse:
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    response = render(
        request,
        "registration/login.html",
        {"form": form, "next": request.POST.get("next", ""), "refusal": message},
        status=status,
    )
    response["Retry-After"] = str(retry_after)
    return response


def throttled(view: View) -> View:
    """Refuse sign-in attempts past the failure limits, and count each failed one."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        try:
            wait = login_wait(request)
        except Exception as exc:
            # The cache (Redis) is down: refuse clearly, rather than let guessing go unlimited.
            logger.warning("The sign-in throttle's cache failed: %s", exc)
            return _refused(
                request,
                status=503,
                message="Signing in is briefly unavailable. Try again in a few seconds.",
                retry_after=5,
            )
        if wait is not None:
            return _refused(
                request,
                status=429,
                message=f"Too many failed sign-in attempts. Wait {wait_words(wait)} and try again.",
                retry_after=wait,
            )
        response = view(request, *args, **kwargs)
        # A sign-in view answers a wrong password with its form again (200); success redirects.
        if response.status_code == 200:
            try:
                login_failed(request)
            except Exception as exc:
                logger.warning("The sign-in throttle's cache failed: %s", exc)
        return response

    return wrapper


admin_login = throttled(admin.site.login)
