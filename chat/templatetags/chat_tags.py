from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3


@register.filter
def usd(microusd: int | None) -> str:
    if microusd is None:
        return "no price"
    dollars = microusd / 1_000_000
    if dollars == 0:
        return "$0"
    if dollars < 0.0001:
        return "<$0.0001"  # not free, just too small to show
    if dollars < 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"


@register.filter
def seconds(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "–"
    return f"{milliseconds / 1000:.2f} s"


@register.filter
def thousands(value: int | None) -> str:
    return f"{value or 0:,}"
