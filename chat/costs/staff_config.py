"""What staff configure that every send and every ending reads — price overrides and spending
caps — kept in memory for a few seconds.

Both tables are tiny and change when someone edits them in the admin, yet every send read them
(an override lookup for the model's prices, a cap lookup for the budget) and every ending read
the override again: three queries of Django's query building per reply, a few milliseconds of the
CPU a one-core worker spends on a reply (docs/journal.md, the third pass on the hot path). Each
process now keeps what it read for CHAT_STAFF_CONFIG_SECONDS. A change is seen at once by the
process that made it (saving or deleting either model drops this process's copy) and within that
many seconds by every other worker.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat.models import PriceOverride, SpendingCap

# Per-user caps are read one user at a time; beyond this many remembered, the oldest go.
MAX_REMEMBERED_USERS = 10_000

_lock = threading.Lock()
# Bumped by every change: a read that began before one is not kept (it may predate the change).
_generation = 0
# (provider, model) -> (read at, the model's overrides, newest `valid_from` first)
_overrides: dict[tuple[str, str], tuple[float, list[PriceOverride]]] = {}
# user id (None: anonymous) -> (read at, the caps that may apply to them, by scope)
_caps: dict[int | None, tuple[float, dict[str, SpendingCap]]] = {}


def _fresh(read_at: float) -> bool:
    return time.monotonic() - read_at < settings.CHAT_STAFF_CONFIG_SECONDS


def price_overrides(provider: str, model: str) -> list[PriceOverride]:
    """The model's price overrides, newest `valid_from` first."""
    key = (provider, model)
    with _lock:
        cached = _overrides.get(key)
    if cached is not None and _fresh(cached[0]):
        return cached[1]
    read_at, generation = time.monotonic(), _generation
    overrides = list(
        PriceOverride.objects.filter(provider=provider, model=model).order_by("-valid_from")
    )
    with _lock:
        if generation == _generation:
            _overrides[key] = (read_at, overrides)
    return overrides


def price_override_on(provider: str, model: str, on: date) -> PriceOverride | None:
    """The override in force on `on`: the latest valid from then or before."""
    return next((o for o in price_overrides(provider, model) if o.valid_from <= on), None)


def spending_caps(user_id: int | None) -> dict[str, SpendingCap]:
    """By scope, the caps that may apply to this user (None: an anonymous visitor): their own or
    the anonymous default, and the default for everyone."""
    with _lock:
        cached = _caps.get(user_id)
    if cached is not None and _fresh(cached[0]):
        return cached[1]
    read_at, generation = time.monotonic(), _generation
    own = (
        SpendingCap.objects.filter(user_id=user_id)
        if user_id is not None
        else SpendingCap.objects.filter(scope=SpendingCap.Scope.ANONYMOUS)
    )
    caps = {cap.scope: cap for cap in own | SpendingCap.objects.filter(scope="everyone")}
    with _lock:
        if generation == _generation:
            if len(_caps) >= MAX_REMEMBERED_USERS:
                del _caps[next(iter(_caps))]
            _caps[user_id] = (read_at, caps)
    return caps


def staff_config_forget() -> None:
    """Read everything again next time (an edit in the admin, a test's fresh database)."""
    global _generation
    with _lock:
        _generation += 1
        _overrides.clear()
        _caps.clear()


@receiver(post_save, sender=PriceOverride, dispatch_uid="chat_staff_config_override_saved")
@receiver(post_delete, sender=PriceOverride, dispatch_uid="chat_staff_config_override_gone")
@receiver(post_save, sender=SpendingCap, dispatch_uid="chat_staff_config_cap_saved")
@receiver(post_delete, sender=SpendingCap, dispatch_uid="chat_staff_config_cap_gone")
def _staff_config_changed(sender: Any, **kwargs: Any) -> None:
    staff_config_forget()
