"""Limits that a new session does not reset: who is sending, from where, and how much at once.

Every way to start a reply (the WebSocket, the htmx POST, the no-JavaScript POST, the API) goes
through `send_check` and, inside the transaction that starts the reply, `streaming_check`:

- Send rates are counted per person (user, or anonymous visitor) *and* per client IP, through the
  Django cache, so all workers agree when the cache is Redis. A visitor who drops their cookie to
  get a fresh session still shares their IP's count.
- Replies streaming at once are capped per person and per IP, counted in the database (the
  streaming rows are the truth, whichever worker runs them).

The client IP is the peer's address, unless the peer is one of CHAT_TRUSTED_PROXIES: then the
nearest address in X-Forwarded-For that is not a trusted proxy. Nothing else believes that header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from chat.conversations.errors import RateLimited, ServiceUnavailable
from chat.telemetry import metrics

if TYPE_CHECKING:
    from chat.conversations.reads import Visitor

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies if proxy)


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _trusted_networks(tuple(settings.CHAT_TRUSTED_PROXIES)))


def client_ip_from(peer: str, forwarded_for: str | None) -> str:
    """The client's address: the peer, or past trusted proxies the nearest untrusted hop."""
    if not forwarded_for or not _is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a garbled header is not believed at all
    return hops[0] if hops else peer


def request_client_ip(request: HttpRequest) -> str:
    return client_ip_from(
        request.META.get("REMOTE_ADDR", "") or "", request.META.get("HTTP_X_FORWARDED_FOR")
    )


def scope_client_ip(scope: Mapping[str, Any]) -> str:
    client = scope.get("client") or ("", 0)
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for")
    return client_ip_from(str(client[0] or ""), forwarded.decode("latin-1") if forwarded else None)


def client_key(ip: str) -> str:
    """What is stored of an address: a keyed hash, enough to count by, useless to anyone else."""
    if not ip:
        return ""
    digest = hmac.new(settings.SECRET_KEY.encode(), ip.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


# --- Send rates --------------------------------------------------------------------------------


def _count(group: str, key: str, rate: str) -> int | None:
    """Count one send under `key`; the seconds to wait if it is over `rate`, else None."""
    try:
        usage = get_usage(
            HttpRequest(), group=group, key=lambda _g, _r: key, rate=rate, increment=True
        )
    except Exception as exc:
        # The cache (Redis) is down: refuse clearly rather than fail with a 500 or let
        # everything through unlimited.
        logger.warning("The rate limit cache failed: %s", exc)
        metrics.redis_error("rate_limit")
        raise ServiceUnavailable() from exc
    if not usage or not usage["should_limit"]:
        return None
    if usage["time_left"] < 0:  # django-ratelimit's answer when the cache failed quietly
        raise ServiceUnavailable()
    return max(1, int(usage["time_left"]))


def wait_words(seconds: int) -> str:
    """A wait as people say it: "45 seconds", "3 minutes"."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def send_check(visitor: Visitor, *, api_key_id: int | None = None) -> None:
    """Count a send against the person's, the IP's (and the API key's) rates, or raise
    RateLimited naming the wait."""
    checks: list[tuple[str, str, str]] = []
    if settings.CHAT_RATE_LIMIT:
        checks.append(("chat-send", visitor.key, settings.CHAT_RATE_LIMIT))
    if settings.CHAT_IP_RATE_LIMIT and visitor.client_ip:
        checks.append(("chat-send-ip", f"ip:{visitor.client_ip}", settings.CHAT_IP_RATE_LIMIT))
    if api_key_id is not None and settings.CHAT_API_KEY_RATE_LIMIT:
        checks.append(("chat-send-key", f"key:{api_key_id}", settings.CHAT_API_KEY_RATE_LIMIT))
    wait = max((w for w in (_count(*check) for check in checks) if w is not None), default=None)
    if wait is not None:
        raise RateLimited(
            f"You are sending messages too quickly. Wait {wait_words(wait)} and try again.",
            retry_after=wait,
        )


def upload_check(visitor: Visitor) -> None:
    """Count an upload (an attachment) against the person's and the IP's upload rates, or raise
    RateLimited naming the wait."""
    checks: list[tuple[str, str, str]] = []
    if settings.CHAT_UPLOAD_RATE_LIMIT:
        checks.append(("chat-upload", visitor.key, settings.CHAT_UPLOAD_RATE_LIMIT))
    if settings.CHAT_UPLOAD_IP_RATE_LIMIT and visitor.client_ip:
        checks.append(
            ("chat-upload-ip", f"ip:{visitor.client_ip}", settings.CHAT_UPLOAD_IP_RATE_LIMIT)
        )
    wait = max((w for w in (_count(*check) for check in checks) if w is not None), default=None)
    if wait is not None:
        raise RateLimited(
            f"You are attaching files too quickly. Wait {wait_words(wait)} and try again.",
            retry_after=wait,
        )


# --- Replies at once ------------------------------------------------------------------------------


def streaming_check(visitor: Visitor) -> None:
    """Refuse a new reply while the person, or their IP, already has as many streaming as the
    caps allow. Call inside the transaction that starts the reply."""
    from chat.models import Message

    streaming = Message.objects.streaming()
    person = (
        # The replies this person asked for, in their conversations and in shared ones.
        streaming.filter(
            Q(author_id=visitor.user.pk) | Q(author__isnull=True, conversation__user=visitor.user)
        )
        if visitor.is_authenticated
        else streaming.filter(
            conversation__user__isnull=True, conversation__visitor_id=visitor.visitor_id
        )
    )
    cap = settings.CHAT_MAX_STREAMING_PER_PERSON
    if cap and person.count() >= cap:
        raise RateLimited(
            f"You already have {cap} repl{'y' if cap == 1 else 'ies'} streaming. Wait for one "
            "to finish, or stop it, and try again.",
            retry_after=5,
        )
    ip_cap = settings.CHAT_MAX_STREAMING_PER_IP
    if (
        ip_cap
        and visitor.client_ip
        and streaming.filter(client_key=client_key(visitor.client_ip)).count() >= ip_cap
    ):
        raise RateLimited(
            f"Your network already has {ip_cap} replies streaming. Wait for one to finish and "
            "try again.",
            retry_after=5,
        )


# --- Readers at once (per process: they hold this process's memory) ----------------------------


class TooManyReaders(RateLimited):
    pass


class ReaderSlots:
    """Counts the readers (WebSocket watches, SSE streams) each person and each IP has open in
    this process, so one visitor cannot hold unbounded buffers here."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def acquire(self, keys: Iterable[tuple[str, int]]) -> list[str]:
        keys = [(key, cap) for key, cap in keys if key]
        for key, cap in keys:
            if cap and self._counts.get(key, 0) >= cap:
                raise TooManyReaders(
                    "Too many open streams for you. Close another tab of this chat and try again.",
                    retry_after=5,
                )
        for key, _cap in keys:
            self._counts[key] = self._counts.get(key, 0) + 1
        return [key for key, _cap in keys]

    def release(self, keys: Iterable[str]) -> None:
        for key in keys:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)


reader_slots = ReaderSlots()


class ReaderSlot:
    """One open reader's place; `release` may be called any number of times."""

    def __init__(self, keys: list[str]) -> None:
        self._keys: list[str] | None = keys

    def release(self) -> None:
        if self._keys is not None:
            reader_slots.release(self._keys)
            self._keys = None


def reader_acquire(visitor: Visitor) -> ReaderSlot:
    """Take a reader slot for the person and their IP, or raise TooManyReaders."""
    ip_key = f"ip:{visitor.client_ip}" if visitor.client_ip else ""
    return ReaderSlot(
        reader_slots.acquire(
            [
                (visitor.key, settings.CHAT_MAX_READERS_PER_PERSON),
                (ip_key, settings.CHAT_MAX_READERS_PER_IP),
            ]
        )
    )
