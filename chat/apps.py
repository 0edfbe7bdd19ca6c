from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _sqlite_pragmas(sender: Any, connection: Any, **kwargs: Any) -> None:
    # WAL lets readers (page loads, the admin) run while the generation job writes.
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL;")
            cursor.execute("PRAGMA synchronous=NORMAL;")


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        connection_created.connect(_sqlite_pragmas, dispatch_uid="chat_sqlite_pragmas")
        # Sign-in claims a visitor's conversations and sign-out forgets the visitor: connected
        # here, because nothing a serving process imports would otherwise import the receivers.
        from chat.web import receivers

        receivers.connect()
        # A member's removal closes their sockets and ends their streams, on every worker.
        from chat.rooms import receivers as room_receivers

        room_receivers.connect()
        # The sign-in library's admin entries, only with single sign-on configured.
        from chat.admin.sign_in import hide_sign_in_admin_unless_sso

        hide_sign_in_admin_unless_sso()
        # A deleted attachment row (swept, or purged with its conversation) takes its files.
        from chat.attachments import receivers as attachment_receivers

        attachment_receivers.connect()
        # Import the configured SDKs now: importing one lazily inside the event loop on the first
        # reply would stall every stream of the process for most of a second.
        from django.conf import settings

        if settings.OPENAI_API_KEY:
            import chat.providers.openai  # noqa: F401
        if settings.ANTHROPIC_API_KEY:
            import chat.providers.anthropic  # noqa: F401
