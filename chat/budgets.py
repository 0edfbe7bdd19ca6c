"""Spending caps: how much of a person's daily and monthly cap their replies have used.

Reads only; `chat.services` refuses a send that is over budget and ends a reply that crosses the
cap mid-stream. Spending counts every priced reply, replaced ones included (they were paid for).
Replies with no known price cannot count against a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.formats import date_format

from chat.models import Message, SpendingCap
from chat.money import format_usd


@dataclass(frozen=True, slots=True)
class Allowance:
    """The tightest of a person's caps: what is left of it, and how to tell them."""

    remaining_microusd: int
    cap_microusd: int
    period: str  # "daily" or "monthly"
    resets: str  # "at midnight (UTC)", "on 1 December"

    @property
    def exhausted(self) -> bool:
        return self.remaining_microusd <= 0

    def refusal(self) -> str:
        return (
            f"You have reached your {self.period} spending limit of "
            f"{format_usd(self.cap_microusd)}. It resets {self.resets}."
        )

    def reached(self) -> str:
        return (
            f"This reply was stopped because it reached your {self.period} spending limit of "
            f"{format_usd(self.cap_microusd)}."
        )


def spending_cap_for(*, user_id: int | None) -> SpendingCap | None:
    """A user's own cap replaces the defaults; anonymous visitors get the anonymous default or,
    failing that, the default for everyone."""
    caps = SpendingCap.objects.filter(
        Q(user_id=user_id) if user_id is not None else Q(scope=SpendingCap.Scope.ANONYMOUS)
    ) | SpendingCap.objects.filter(scope=SpendingCap.Scope.EVERYONE)
    by_scope = {cap.scope: cap for cap in caps}
    if user_id is not None:
        return by_scope.get(SpendingCap.Scope.USER) or by_scope.get(SpendingCap.Scope.EVERYONE)
    return by_scope.get(SpendingCap.Scope.ANONYMOUS) or by_scope.get(SpendingCap.Scope.EVERYONE)


def spent_microusd(*, user_id: int | None, visitor_id: str, today: date) -> tuple[int, int]:
    """What the person's replies cost today and this month."""
    owner = (
        Q(conversation__user_id=user_id)
        if user_id is not None
        else Q(conversation__user__isnull=True, conversation__visitor_id=visitor_id)
    )
    figures = Message.objects.filter(
        owner, role=Message.Role.ASSISTANT, day__gte=today.replace(day=1), day__lte=today
    ).aggregate(
        today=Sum("cost_microusd", filter=Q(day=today)),
        month=Sum("cost_microusd"),
    )
    return figures["today"] or 0, figures["month"] or 0


def allowance_for(*, user_id: int | None, visitor_id: str) -> Allowance | None:
    """None when no cap applies."""
    cap = spending_cap_for(user_id=user_id)
    if cap is None or (cap.daily_cap is None and cap.monthly_cap is None):
        return None
    today = timezone.localdate()
    spent_today, spent_month = spent_microusd(user_id=user_id, visitor_id=visitor_id, today=today)
    allowances = []
    if cap.daily_cap is not None:
        allowances.append(
            Allowance(
                cap.daily_cap - spent_today,
                cap.daily_cap,
                "daily",
                f"at midnight ({settings.TIME_ZONE})",
            )
        )
    if cap.monthly_cap is not None:
        next_month = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
        allowances.append(
            Allowance(
                cap.monthly_cap - spent_month,
                cap.monthly_cap,
                "monthly",
                f"on {date_format(next_month, 'j F')}",
            )
        )
    return min(allowances, key=lambda allowance: allowance.remaining_microusd)
