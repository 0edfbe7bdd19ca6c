"""Money is stored as integers of micro-dollars (SQLite would keep a DecimalField as a float) and
edited in forms as dollars."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import forms
from django.core.validators import MinValueValidator
from django.db import models

MICRO = 1_000_000


def dollars_to_micro(dollars: Decimal | float | str) -> int:
    return int((Decimal(str(dollars)) * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micro_to_dollars(micro: int) -> Decimal:
    return (Decimal(micro) / MICRO).normalize()


def dollars_text(micro: int | None) -> str:
    """Exact dollars with six decimals for exports (`1.250000`), empty for no price."""
    return "" if micro is None else f"{Decimal(micro) / MICRO:.6f}"


def format_usd(micro: int | None) -> str:
    """`$1.25`, `$0.0034`, `<$0.0001`, `$0` — or `no price` when none is known (not the same as
    free)."""
    if micro is None:
        return "no price"
    dollars = micro / MICRO
    if dollars == 0:
        return "$0"
    if dollars < 0.0001:
        return "<$0.0001"  # not free, just too small to show
    if dollars < 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"


class DollarsFormField(forms.DecimalField):
    """Shows and accepts dollars; cleans to an integer of micro-dollars."""

    def __init__(self, **kwargs: Any) -> None:
        # The model field's integer bounds are in micro-dollars; they do not apply to dollars.
        kwargs.pop("max_value", None)
        kwargs.pop("min_value", None)
        kwargs.pop("max_digits", None)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(min_value=Decimal(0), **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return micro_to_dollars(value)
        return value

    def clean(self, value: Any) -> int | None:  # type: ignore[override]
        dollars = super().clean(value)
        return None if dollars is None else dollars_to_micro(dollars)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            cleaned = self.clean(data)
        except forms.ValidationError:
            return True
        return cleaned != initial


class MicroDollarsField(models.BigIntegerField):
    """An amount of money as an integer of micro-dollars, edited in the admin as dollars."""

    @property
    def validators(self) -> list[Any]:
        return [*super().validators, MinValueValidator(0)]

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": DollarsFormField, **kwargs})
