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

        from chat import signals  # noqa: F401 - connects the login hand-over

        connection_created.connect(_sqlite_pragmas, dispatch_uid="chat_sqlite_pragmas")
