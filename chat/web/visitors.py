"""Who an anonymous visitor is, without a database row per visit.

An anonymous visitor is a random id in a signed cookie. Viewing the page writes nothing to the
database (bots, link previews and floods of fresh requests used to create a session row each);
conversations are keyed by the id, and signing in moves them to the account. Sessions made before
this (and by tests) keep their id in the session, which still counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

VISITOR_SESSION_KEY = "chat_visitor_id"
VISITOR_COOKIE = "chat_visitor"
_SALT = "chat.visitor"
_NEW = "_chat_visitor_new"
_FORGET = "_chat_visitor_forget"


def _unsigned(value: str | None) -> str:
    if not value:
        return ""
    try:
        return signing.get_cookie_signer(salt=_SALT).unsign(value)
    except signing.BadSignature:
        return ""


def visitor_id_of(request: HttpRequest) -> str:
    """The visitor's id, or "" if they have none yet."""
    if new := getattr(request, _NEW, ""):
        return str(new)
    session = getattr(request, "session", None)
    from_session = session.get(VISITOR_SESSION_KEY, "") if session is not None else ""
    return from_session or _unsigned(request.COOKIES.get(VISITOR_COOKIE))


def visitor_id_ensure(request: HttpRequest) -> str:
    """The visitor's id, minted (and set as a cookie on the response) if they have none."""
    visitor_id = visitor_id_of(request)
    if not visitor_id:
        visitor_id = uuid.uuid4().hex
        setattr(request, _NEW, visitor_id)
    return visitor_id


def visitor_id_from_scope(scope: Mapping[str, Any]) -> str:
    """The same, for a WebSocket (Channels puts the session and cookies in the scope)."""
    session = scope.get("session")
    from_session = session.get(VISITOR_SESSION_KEY, "") if session is not None else ""
    return from_session or _unsigned((scope.get("cookies") or {}).get(VISITOR_COOKIE))


def visitor_forget(request: HttpRequest) -> None:
    """Drop the visitor cookie with the response (after signing in or out)."""
    setattr(request, _FORGET, True)


def visitor_cookie_apply(request: HttpRequest, response: HttpResponseBase) -> None:
    if getattr(request, _FORGET, False):
        response.delete_cookie(VISITOR_COOKIE, samesite="Lax")
    elif new := getattr(request, _NEW, ""):
        response.set_cookie(
            VISITOR_COOKIE,
            signing.get_cookie_signer(salt=_SALT).sign(new),
            max_age=settings.SESSION_COOKIE_AGE,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
