from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import URLPattern, URLResolver, include, path

from chat.web import accounts
from chat.web.auth_views import admin_login, throttled
from chatsite.ops import probes

_auth = auth_views
account_urls: list[URLPattern | URLResolver] = [
    # Both sign-in forms count failed attempts (chat/web/auth_views.py).
    path(
        "login/",
        throttled(_auth.LoginView.as_view(redirect_authenticated_user=True)),
        name="login",
    ),
    path("logout/", _auth.LogoutView.as_view(), name="logout"),
    path("password_change/", _auth.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        _auth.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Password reset exists only with EMAIL_URL (a 404 otherwise; chat/web/accounts.py).
    path("password_reset/", accounts.password_reset, name="password_reset"),
    path("password_reset/done/", accounts.password_reset_done, name="password_reset_done"),
    path("reset/<uidb64>/<token>/", accounts.password_reset_confirm, name="password_reset_confirm"),
    path("reset/done/", accounts.password_reset_complete, name="password_reset_complete"),
    path("signup/", accounts.signup, name="signup"),
    # Single sign-on (django-allauth's OpenID Connect provider and the pages of its flow). Its
    # own account pages are not mounted; the names its flow links to lead to Django's pages.
    path("sso/", include("allauth.socialaccount.providers.openid_connect.urls")),
    path("sso/", include("allauth.socialaccount.urls")),
    path("sso/inactive/", accounts.account_inactive, name="account_inactive"),
    path("login/", throttled(_auth.LoginView.as_view()), name="account_login"),
    path("logout/", _auth.LogoutView.as_view(), name="account_logout"),
    path("signup/", accounts.signup, name="account_signup"),
]


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
    # Before the admin's own route to its sign-in view, which this one throttles.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("accounts/", include(account_urls)),
    # The OpenAI-compatible API (chat/api/); its clients set base_url to .../v1.
    path("v1/", include("chat.api.urls")),
    path("", include("chat.web.urls")),
]
