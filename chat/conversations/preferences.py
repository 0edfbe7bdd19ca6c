"""A signed-in person's preferences: their default instructions, which prefill the system prompt
of each new conversation they start (ChatGPT's custom instructions, Open WebUI's user system
prompt). Conversations already started keep the prompt they have."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from chat.conversations.errors import ChatInputError
from chat.conversations.text import text_clean
from chat.models import Preferences


def default_instructions_for(user: Any) -> str:
    """The person's default instructions; empty for anonymous visitors and for anyone who never
    saved any (no row is created by reading)."""
    if user is None or not user.is_authenticated:
        return ""
    found = Preferences.objects.filter(user=user).values_list("default_instructions", flat=True)
    return next(iter(found), "")


def default_instructions_set(*, user: Any, text: str) -> Preferences:
    """Save the person's default instructions, cleaned like a system prompt and within the same
    cap (CHAT_MAX_SYSTEM_PROMPT_CHARS); empty clears them. Raises ChatInputError when too long."""
    text = text_clean(text or "").strip()
    limit = settings.CHAT_MAX_SYSTEM_PROMPT_CHARS
    if len(text) > limit:
        raise ChatInputError(
            f"Your instructions are {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten them and save again."
        )
    preferences, _ = Preferences.objects.update_or_create(
        user=user, defaults={"default_instructions": text, "updated_at": timezone.now()}
    )
    return preferences
