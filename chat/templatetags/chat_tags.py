from __future__ import annotations

import re

from django import template
from django.utils.safestring import SafeString, mark_safe

from chat.attachments.shown import ShownFile
from chat.attachments.shown import message_files as _message_files
from chat.money import format_usd
from chat.web.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3


@register.filter
def message_files(message: object) -> tuple[ShownFile, ...]:
    """The files a user message was sent with, as the message shows them."""
    return tuple(_message_files(message))  # type: ignore[arg-type]


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


@register.filter
def percent(share: float | None) -> str:
    if share is None:
        return "–"
    return f"{share * 100:.1f} %"


@register.filter
def ms(milliseconds: float | None) -> str:
    """A duration for tables: `340 ms`, `1.25 s`."""
    if milliseconds is None:
        return "–"
    if milliseconds < 1000:
        return f"{round(milliseconds)} ms"
    return f"{milliseconds / 1000:.2f} s"


@register.filter
def initials(name: str) -> str:
    """Up to two letters for a presence chip: "Ana Lima" and "ana.lima" give "AL"."""
    parts = [p for p in re.split(r"[\s._@-]+", str(name or "")) if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[1][0]).upper()
