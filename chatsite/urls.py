from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from chatsite import probes


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Resolved per request, not at import: with hashed static names (DJANGO_STATIC_MANIFEST) the
    # name exists only once collectstatic has run, and management commands import the URLs.
    return HttpResponsePermanentRedirect(static("chat/favicon.svg"))


urlpatterns = [
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's).
    path("favicon.ico", favicon),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", probes.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    # The OpenAI-compatible API (chat/api/); its clients set base_url to .../v1.
    path("v1/", include("chat.api.urls")),
    path("", include("chat.urls")),
]
