"""API keys for staff: who holds which key, when it was last used, and revoking it. Keys are
created by their owners (the settings page) or `manage.py create_api_key`, never here: a key is
shown only to whoever creates it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.api.keys import api_key_revoke
from chat.models import ApiKey


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> Any:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "user", "prefix_display", "created_at", "last_used_at", "status"]
    list_filter = [ActiveFilter]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    list_select_related = ["user"]
    fields = ["name", "user", "prefix_display", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["name", "user", "prefix_display", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewable, not editable: revoking is the only change, and it is an action.
        return False

    @admin.display(description="key")
    def prefix_display(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…"

    @admin.display(description="status", ordering="revoked_at")
    def status(self, api_key: ApiKey) -> str:
        return "active" if api_key.is_active else f"revoked {api_key.revoked_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Revoke selected API keys", permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_key_revoke(api_key=api_key) for api_key in queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
