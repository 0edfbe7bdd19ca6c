"""Prices and spending caps, edited in dollars (stored as integer micro-dollars)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat.admin.analytics import models_seen
from chat.analytics.rollups import rollups_build
from chat.costs.pricing import unit_prices
from chat.models import Message, PriceOverride, SpendingCap, UsageDay, UsageDayModel
from chat.money import format_usd

UNPRICED_DAYS = 90


class SuggestingInput(forms.TextInput):
    """A text box with suggestions (an HTML datalist): any other text is still accepted."""

    def __init__(self, list_id: str, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({**(attrs or {}), "list": list_id})
        self.list_id = list_id
        self.suggestions: list[tuple[str, str]] = []

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        options = format_html_join(
            "",
            '<option value="{}"{}></option>',
            (
                (value, format_html(' label="{}"', label) if label else "")
                for value, label in self.suggestions
            ),
        )
        box = super().render(name, value, attrs, renderer)
        return format_html('{}<datalist id="{}">{}</datalist>', box, self.list_id, options)


@dataclass
class UnpricedModel:
    provider: str
    model: str
    unpriced: int
    override: PriceOverride | None = None


def unpriced_models(*, days: int = UNPRICED_DAYS) -> list[UnpricedModel]:
    """Models whose replies of the last `days` days have no price, with how many: from the
    roll-ups, plus the days not rolled up yet (today) from the replies."""
    today = timezone.localdate()
    period = [today - timedelta(days=offset) for offset in range(days)]
    rollups_build(today=today, days=period)
    rolled = set(UsageDay.objects.filter(day__in=period, stale=False).values_list("day", flat=True))
    counts: dict[tuple[str, str], int] = {}
    rows = (
        UsageDayModel.objects.filter(usage_day__in=rolled, unpriced_replies__gt=0)
        .values_list("provider", "model")
        .annotate(unpriced=Sum("unpriced_replies"))
        .order_by()
    )
    live = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            day__in=[day for day in period if day not in rolled],
            cost_microusd__isnull=True,
        )
        .exclude(status=Message.Status.STREAMING)
        .values_list("provider", "model")
        .annotate(unpriced=Count("id"))
        .order_by()
    )
    for provider, model, unpriced in (*rows, *live):
        counts[provider, model] = counts.get((provider, model), 0) + unpriced
    overrides = {(o.provider, o.model): o for o in PriceOverride.objects.order_by("valid_from")}
    return [
        UnpricedModel(provider, model, unpriced, overrides.get((provider, model)))
        for (provider, model), unpriced in sorted(counts.items(), key=lambda item: -item[1])
    ]


def _per_mtok(micro: int | None) -> str:
    return "same as input" if micro is None else format_usd(micro)


class PriceOverrideForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = PriceOverride
        fields = [
            "provider",
            "model",
            "input_per_mtok",
            "output_per_mtok",
            "cached_input_per_mtok",
            "valid_from",
            "note",
        ]
        help_texts = {
            "provider": "As in the chat's model picker: demo, openai or anthropic (the list "
            "suggests those replies used).",
            "model": "The model name exactly as the provider knows it, e.g. gpt-4o-mini (the "
            "list suggests those replies used).",
            "valid_from": "Replies written on or after this day use this price. Replies already "
            "written keep the cost they were given.",
        }
        widgets = {
            "provider": SuggestingInput("seen-providers"),
            "model": SuggestingInput("seen-models"),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Suggest what replies used; a model not seen yet can still be typed in.
        pairs = models_seen()
        self.fields["provider"].widget.suggestions = [
            (provider, "") for provider in sorted({provider for provider, _ in pairs})
        ]
        self.fields["model"].widget.suggestions = [(model, provider) for provider, model in pairs]


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PriceOverrideForm
    list_display = [
        "model_label",
        "input_price",
        "output_price",
        "cached_input_price",
        "valid_from",
        "library_price",
        "note",
    ]
    list_filter = ["provider"]
    search_fields = ["model", "note"]
    ordering = ["provider", "model", "-valid_from"]

    class Media:
        css = {"all": ["chat/admin.css"]}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "unpriced_models": unpriced_models(),
            "unpriced_days": UNPRICED_DAYS,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="model", ordering="model")
    def model_label(self, override: PriceOverride) -> str:
        return f"{override.provider}:{override.model}"

    @admin.display(description="input / 1M", ordering="input_per_mtok")
    def input_price(self, override: PriceOverride) -> str:
        return _per_mtok(override.input_per_mtok)

    @admin.display(description="output / 1M", ordering="output_per_mtok")
    def output_price(self, override: PriceOverride) -> str:
        return _per_mtok(override.output_per_mtok)

    @admin.display(description="cached input / 1M")
    def cached_input_price(self, override: PriceOverride) -> str:
        return _per_mtok(override.cached_input_per_mtok)

    @admin.display(description="genai-prices (in / out per 1M)")
    def library_price(self, override: PriceOverride) -> str:
        # What the reply would cost without overrides, for comparison: the library's price.
        if override.provider == "demo":
            return "free (offline demo)"
        # Priced on a day before any override can apply: the library's price alone.
        prices = unit_prices(provider=override.provider, model=override.model, on=date.min)
        if prices is None:
            return "not known"
        return f"{format_usd(prices[0])} / {format_usd(prices[1])}"


class SpendingCapForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = SpendingCap
        fields = ["scope", "user", "daily_cap", "monthly_cap"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        scope, user = cleaned.get("scope"), cleaned.get("user")
        if scope == SpendingCap.Scope.USER and user is None:
            raise ValidationError({"user": "Pick the user this cap is for."})
        if scope and scope != SpendingCap.Scope.USER and user is not None:
            raise ValidationError({"user": "Leave the user empty for a default cap."})
        if scope and scope != SpendingCap.Scope.USER:
            others = SpendingCap.objects.filter(scope=scope).exclude(pk=self.instance.pk)
            if others.exists():
                raise ValidationError(
                    {"scope": "There is already a cap with this scope; edit that one instead."}
                )
        return cleaned


@admin.register(SpendingCap)
class SpendingCapAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = SpendingCapForm
    list_display = ["__str__", "scope", "daily", "monthly", "updated_at"]
    list_filter = ["scope"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    search_fields = ["user__username", "user__email"]

    @admin.display(description="daily cap", ordering="daily_cap")
    def daily(self, cap: SpendingCap) -> str:
        return "no cap" if cap.daily_cap is None else format_usd(cap.daily_cap)

    @admin.display(description="monthly cap", ordering="monthly_cap")
    def monthly(self, cap: SpendingCap) -> str:
        return "no cap" if cap.monthly_cap is None else format_usd(cap.monthly_cap)
