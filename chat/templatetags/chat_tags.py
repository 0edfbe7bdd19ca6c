from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.money import format_usd
from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3


@register.filter
def usd(microusd: int | None) -> str:
    return format_usd(microusd)


@register.filter
def seconds(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "–"
    return f"{milliseconds / 1000:.2f} s"


@register.filter
def thousands(value: int | None) -> str:
    return f"{value or 0:,}"
