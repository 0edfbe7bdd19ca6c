"""Personal API keys: creating, revoking, and finding the key a request carries.

A key is `csk-` and 43 URL-safe characters (256 random bits). Only its SHA-256 digest is stored:
with that much entropy a slow password hash would add nothing but a cost on every request, and
the digest is looked up through a unique index in one query.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone

from chat.models import ApiKey

KEY_PREFIX = "csk-"
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 6
# last_used_at is written at most this often per key: a script calling in a loop must not turn
# every request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_NAME_LENGTH = ApiKey._meta.get_field("name").max_length or 100


def key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, user: Any, name: str) -> tuple[ApiKey, str]:
    """A new key for `user`: the saved row and the key itself, which is never stored and can
    only be shown now."""
    name = " ".join((name or "").split())[:MAX_NAME_LENGTH] or "API key"
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw_key[:SHOWN_PREFIX_LENGTH],
        hashed_key=key_digest(raw_key),
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revoke a key at once (its next request is refused). False if it was already revoked."""
    now = timezone.now()
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if revoked:
        api_key.revoked_at = now
    return bool(revoked)


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key of an active user that `raw_key` is, with its user; marks it used."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    api_key = (
        ApiKey.objects.active()
        .select_related("user")
        .filter(hashed_key=key_digest(raw_key), user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def api_keys_for(user: Any) -> Any:
    return ApiKey.objects.filter(user=user)
