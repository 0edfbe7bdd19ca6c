"""Prices and spending caps, edited in dollars (stored as integer micro-dollars)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from chat.models import PriceOverride, SpendingCap
from chat.money import format_usd
from chat.pricing import unit_prices


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
            "provider": "As in the chat's model picker: demo, openai or anthropic.",
            "model": "The model name exactly as the provider knows it, e.g. gpt-4o-mini.",
            "valid_from": "Replies written on or after this day use this price. Replies already "
            "written keep the cost they were given.",
        }


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
