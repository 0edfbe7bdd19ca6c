"""Spending caps: how much of a person's daily and monthly cap their replies have used.

Reads only; `chat.replies.start` refuses a send that is over budget and the generation job
(`chat.replies.generation`) ends a reply
that crosses the cap mid-stream. Spending counts every priced reply, replaced ones included
(they were paid for).
Replies with no known price, or free ones, cannot count against a cap, so they are never refused.

Anonymous visitors have default caps from the settings, so a site with a paid provider is not an
open tab on its owner's account: CHAT_ANONYMOUS_DAILY_CAP_USD per visitor (unless staff set a cap
for anonymous visitors or everyone in the admin, which replaces it) and
CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD for all anonymous visitors together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.formats import date_format

from chat import providers
from chat.costs.pricing import library_unit_prices, unit_prices
from chat.costs.staff_config import spending_caps
from chat.models import Message, SpendingCap
from chat.money import dollars_to_micro, format_usd

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Allowance:
    """The tightest of a person's caps: what is left of it, and how to tell them."""

    remaining_microusd: int
    cap_microusd: int
    period: str  # "daily" or "monthly"
    resets: str  # "at midnight (UTC)", "on 1 December"
    resets_at: datetime
    # The cap all anonymous visitors share (CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD), not their own.
    shared: bool = False

    def seconds_until_reset(self) -> int:
        return max(1, int((self.resets_at - timezone.now()).total_seconds()) + 1)

    @property
    def exhausted(self) -> bool:
        return self.remaining_microusd <= 0

    def refusal(self) -> str:
        if self.shared:
            return (
                f"Anonymous use of this chat has reached today's limit of "
                f"{format_usd(self.cap_microusd)} for all visitors together. It resets "
                f"{self.resets}. Sign in to go on."
            )
        return (
            f"You have reached your {self.period} spending limit of "
            f"{format_usd(self.cap_microusd)}. It resets {self.resets}."
        )

    def reached(self) -> str:
        if self.shared:
            return (
                "This reply was stopped because anonymous use of this chat reached today's "
                f"limit of {format_usd(self.cap_microusd)} for all visitors together."
            )
        return (
            f"This reply was stopped because it reached your {self.period} spending limit of "
            f"{format_usd(self.cap_microusd)}."
        )


def spending_cap_for(*, user_id: int | None) -> SpendingCap | None:
    """A user's own cap replaces the defaults; anonymous visitors get the anonymous default or,
    failing that, the default for everyone."""
    by_scope = spending_caps(user_id)  # through a short in-process cache
    if user_id is not None:
        return by_scope.get(SpendingCap.Scope.USER) or by_scope.get(SpendingCap.Scope.EVERYONE)
    return by_scope.get(SpendingCap.Scope.ANONYMOUS) or by_scope.get(SpendingCap.Scope.EVERYONE)


def spent_microusd(
    *, user_id: int | None, visitor_id: str, today: date, client_key: str = ""
) -> tuple[int, int]:
    """What the person's replies cost today and this month. For anonymous visitors the
    anonymous replies sent from the same address count as well, so a fresh session does not
    bring a fresh allowance."""
    if user_id is not None:
        # A reply is charged to the person who asked (`author`), in their own conversations
        # and in those shared with them; replies from before authors were recorded (and
        # generated titles) to the conversation's owner.
        owner = Q(author_id=user_id) | Q(author__isnull=True, conversation__user_id=user_id)
    else:
        owner = Q(conversation__user__isnull=True, conversation__visitor_id=visitor_id)
        if client_key:
            owner |= Q(conversation__user__isnull=True, client_key=client_key)
    figures = Message.objects.filter(
        owner, role=Message.Role.ASSISTANT, day__gte=today.replace(day=1), day__lte=today
    ).aggregate(
        today=Sum("cost_microusd", filter=Q(day=today)),
        month=Sum("cost_microusd"),
    )
    return figures["today"] or 0, figures["month"] or 0


def anonymous_spent_today(today: date) -> int:
    """What all anonymous visitors' replies cost today, together."""
    figures = Message.objects.filter(
        role=Message.Role.ASSISTANT, day=today, conversation__user__isnull=True
    ).aggregate(today=Sum("cost_microusd"))
    return figures["today"] or 0


def _setting_microusd(amount: Decimal | None) -> int | None:
    return None if amount is None else dollars_to_micro(amount)


def allowance_for(
    *, user_id: int | None, visitor_id: str, client_key: str = ""
) -> Allowance | None:
    """None when no cap applies."""
    cap = spending_cap_for(user_id=user_id)
    daily_cap, monthly_cap = (cap.daily_cap, cap.monthly_cap) if cap else (None, None)
    total_cap = None
    if user_id is None:
        if cap is None:
            daily_cap = _setting_microusd(settings.CHAT_ANONYMOUS_DAILY_CAP_USD)
        total_cap = _setting_microusd(settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD)
    if daily_cap is None and monthly_cap is None and total_cap is None:
        return None
    today = timezone.localdate()
    at_midnight = f"at midnight ({settings.TIME_ZONE})"
    allowances = []
    if daily_cap is not None or monthly_cap is not None:
        spent_today, spent_month = spent_microusd(
            user_id=user_id, visitor_id=visitor_id, today=today, client_key=client_key
        )
        if daily_cap is not None:
            allowances.append(
                Allowance(
                    daily_cap - spent_today,
                    daily_cap,
                    "daily",
                    at_midnight,
                    _midnight(today + timedelta(days=1)),
                )
            )
        if monthly_cap is not None:
            next_month = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
            allowances.append(
                Allowance(
                    monthly_cap - spent_month,
                    monthly_cap,
                    "monthly",
                    f"on {date_format(next_month, 'j F')}",
                    _midnight(next_month),
                )
            )
    if total_cap is not None:
        allowances.append(
            Allowance(
                total_cap - anonymous_spent_today(today),
                total_cap,
                "daily",
                at_midnight,
                _midnight(today + timedelta(days=1)),
                shared=True,
            )
        )
    return min(allowances, key=lambda allowance: allowance.remaining_microusd)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _billed(provider: str, model: str, on: date | None = None) -> tuple[int, int] | None:
    """The model's unit prices, or None when its replies cannot spend a cap (free, or no price)."""
    prices = unit_prices(provider=provider, model=model, on=on)
    return None if prices is None or prices == (0, 0) else prices


@dataclass(frozen=True, slots=True)
class BudgetGuard:
    """What is left of a reply's owner's cap when it starts, and the model's prices, so the job can
    bound the reply and end it when its cost so far reaches what was left."""

    remaining_microusd: int
    input_per_mtok: int
    output_per_mtok: int
    message: str

    def crossed(self, *, input_tokens: int, output_tokens: int) -> bool:
        cost = input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok
        return cost >= self.remaining_microusd * 1_000_000

    def output_tokens_left(self, *, input_tokens: int) -> int | None:
        """How many output tokens what is left pays for after the prompt; None: no bound."""
        left = self.remaining_microusd * 1_000_000 - input_tokens * self.input_per_mtok
        if left <= 0:
            return 0
        return left // self.output_per_mtok if self.output_per_mtok else None


def budget_guard(
    *,
    user_id: int | None,
    visitor_id: str,
    provider: str,
    model: str,
    on: date,
    client_key: str = "",
) -> BudgetGuard | None:
    prices = _billed(provider, model, on)
    if prices is None:
        return None
    allowance = allowance_for(user_id=user_id, visitor_id=visitor_id, client_key=client_key)
    if allowance is None:
        return None
    return BudgetGuard(allowance.remaining_microusd, *prices, message=allowance.reached())


@dataclass(frozen=True, slots=True)
class SendBudget:
    """A send's budget, read once: the exhausted cap that refuses it, or what is left of it for
    its reply's job (None: no cap applies, or the model cannot spend one)."""

    refusal: Allowance | None
    guard: BudgetGuard | None


def send_budget(
    *, user_id: int | None, visitor_id: str, provider: str, model: str, client_key: str = ""
) -> SendBudget:
    """Whether a send to this model is refused (its cap is spent) and, if not, what is left of
    the cap for its reply's job (`budget_guard`), from one read."""
    prices = _billed(provider, model)
    if prices is None:
        return SendBudget(None, None)
    allowance = allowance_for(user_id=user_id, visitor_id=visitor_id, client_key=client_key)
    if allowance is None:
        return SendBudget(None, None)
    if allowance.exhausted:
        return SendBudget(allowance, None)
    return SendBudget(None, BudgetGuard(allowance.remaining_microusd, *prices, allowance.reached()))


def anonymous_caps_notice() -> tuple[int, str] | None:
    """What the operator is told at start-up about anonymous use of paid models (with the log
    level: a warning when it is not capped); None when anonymous visitors cannot run up a bill
    (no priced model offered, or everyone must sign in). Reads no database: it runs as the
    server starts. A price staff set in the admin is not seen here, nor a cap staff set for
    anonymous visitors (it replaces the per-visitor default)."""
    if settings.CHAT_REQUIRE_LOGIN:
        return None
    paid = [
        option.label
        for option in providers.available_models()
        if option.provider != "demo" and _library_prices_known(option.provider, option.model)
    ]
    if not paid:
        return None
    per_visitor = settings.CHAT_ANONYMOUS_DAILY_CAP_USD
    total = settings.CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD
    change = (
        "CHAT_ANONYMOUS_DAILY_CAP_USD and CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD set them (`none` "
        "turns one off); CHAT_REQUIRE_LOGIN=true keeps anonymous visitors out; staff set caps "
        "per person in the admin (Spending caps)."
    )
    models = ", ".join(paid)
    if per_visitor is None and total is None:
        return logging.WARNING, (
            f"Anonymous visitors can use paid models ({models}) with no spending cap. {change}"
        )
    caps = []
    if per_visitor is not None:
        caps.append(f"{format_usd(dollars_to_micro(per_visitor))} per visitor per day")
    if total is not None:
        caps.append(f"{format_usd(dollars_to_micro(total))} a day for all of them together")
    return logging.INFO, (
        f"Anonymous use of paid models ({models}) is capped at {' and '.join(caps)}. {change}"
    )


def anonymous_caps_notice_log() -> None:
    """Log `anonymous_caps_notice` (chatsite/asgi.py calls it once per server process)."""
    notice = anonymous_caps_notice()
    if notice is not None:
        logger.log(*notice)


def _library_prices_known(provider: str, model: str) -> bool:
    prices = library_unit_prices(provider, model)
    return prices is not None and prices != (0, 0)
