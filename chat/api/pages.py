"""The API keys settings page: a signed-in user creates keys (each shown once) and revokes them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from chat.api.keys import MAX_NAME_LENGTH, api_key_create, api_key_revoke, api_keys_for
from chat.models import ApiKey


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_API_ENABLED:
        raise Http404("The API is not enabled on this server.")
    created: tuple[ApiKey, str] | None = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            api_key = get_object_or_404(ApiKey, pk=request.POST.get("key"), user=request.user)
            api_key_revoke(api_key=api_key)
            return redirect("chat:api_keys")
        # Rendered, not redirected: the key is shown this once and never stored anywhere.
        created = api_key_create(user=request.user, name=request.POST.get("name", ""))
    context = {
        "api_keys": api_keys_for(request.user),
        "created_key": created[0] if created else None,
        "raw_key": created[1] if created else "",
        "base_url": request.build_absolute_uri("/v1"),
        "name_max_length": MAX_NAME_LENGTH,
    }
    response = render(request, "chat/api_keys.html", context)
    # The page may hold a key in clear: no cache may keep it.
    response["Cache-Control"] = "no-store"
    return response
