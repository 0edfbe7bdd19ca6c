"""A person's own settings pages. Thin: chat/conversations/preferences.py does the work."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from chat.conversations.errors import ChatInputError
from chat.conversations.preferences import default_instructions_for, default_instructions_set


@require_http_methods(["GET", "POST"])
def instructions(request: HttpRequest) -> HttpResponse:
    """Default instructions for new conversations. Anonymous visitors get the page asking them
    to sign in (preferences belong to an account), not a bare redirect."""
    context = {
        "max_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        "login_url": f"{reverse('login')}?next={reverse('chat:instructions')}",
    }
    if not request.user.is_authenticated:
        return render(request, "chat/instructions.html", context)
    if request.method == "POST":
        text = request.POST.get("default_instructions", "")
        try:
            default_instructions_set(user=request.user, text=text)
        except ChatInputError as exc:
            context.update(instructions=text, error=exc.message)
            return render(request, "chat/instructions.html", context, status=exc.status)
        return redirect(f"{reverse('chat:instructions')}?saved=1")
    context.update(
        instructions=default_instructions_for(request.user),
        saved=request.GET.get("saved") == "1",
    )
    return render(request, "chat/instructions.html", context)
