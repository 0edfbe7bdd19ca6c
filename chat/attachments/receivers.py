"""A deleted attachment row takes its stored files with it (unless another row shares them),
however it goes: swept unsent, or with its message when a conversation is purged
(CHAT_PURGE_DELETED). Connected in `ChatConfig.ready()`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete


def _files_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    from chat.attachments.store import files_delete_unused

    names = [instance.storage_name, instance.thumbnail_name]
    # After the commit: a rolled-back delete keeps its files.
    transaction.on_commit(lambda: files_delete_unused(names), using=kwargs.get("using"))


def connect() -> None:
    from chat.models import Attachment

    post_delete.connect(_files_delete, sender=Attachment, dispatch_uid="chat_attachment_files")
