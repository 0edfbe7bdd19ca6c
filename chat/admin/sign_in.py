"""The sign-in library's admin entries (django-allauth: email addresses, social accounts, social
applications and tokens) only where they mean something: with single sign-on configured
(`CHAT_OIDC_ENABLED`). Without it they are empty tables that invite staff to set up a second,
unused sign-in path."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.contrib import admin

SIGN_IN_APPS = ("account", "socialaccount")


def hide_sign_in_admin_unless_sso(site: admin.AdminSite = admin.site) -> None:
    """Unregister allauth's models from the admin when single sign-on is off. Called from
    `ChatConfig.ready()`: the admin's autodiscovery (in the admin app's `ready()`, which runs
    first) has registered them by then."""
    if settings.CHAT_OIDC_ENABLED:
        return
    for label in SIGN_IN_APPS:
        if not apps.is_installed(f"allauth.{label}"):
            continue
        for model in apps.get_app_config(label).get_models():
            if site.is_registered(model):
                site.unregister(model)
