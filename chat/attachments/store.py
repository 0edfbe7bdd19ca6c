"""Keeping attachments: the stored files (by content hash, through Django's storage API) and
their rows, owned exactly as conversations are. Reads check the owner on every path: an id that
is not the viewer's is treated as one that does not exist."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import re
import unicodedata
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from chat.attachments.processing import Processed
from chat.db import db_read, db_write
from chat.models import Attachment
from chat.providers.base import TurnDocument, TurnImage

logger = logging.getLogger(__name__)

# Uploads never sent with a message are removed after this long (`manage.py sweep_attachments`).
UNSENT_KEPT_FOR = timedelta(days=1)

# Controls, path and shell-special characters, and the bidi controls that make a name read other
# than it is ("invoice\u202efdp.exe" shows as "invoiceexe.pdf").
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"|?*\\/\u200e\u200f\u202a-\u202e\u2066-\u2069]+")
_NAME_MAX = 120


def attachment_name_clean(name: str) -> str:
    """The name the person gave, as display text only: no folders (`../../settings.py` is
    `settings.py`), no control or path characters, at most 120 characters with the extension."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        return "file"
    if len(name) > _NAME_MAX:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = f"{stem[: _NAME_MAX - len(extension) - 1]}.{extension}"
        else:
            name = name[:_NAME_MAX]
    return name


def _store(folder: str, data: bytes, extension: str) -> str:
    """Store `data` under its hash, once: identical bytes share one file. Its storage name."""
    digest = hashlib.sha256(data).hexdigest()
    name = posixpath.join(folder, digest[:2], f"{digest}.{extension}")
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(data))
    return name


def _unreferenced(names: list[str]) -> list[str]:
    used = set(
        Attachment.objects.filter(
            Q(storage_name__in=names) | Q(thumbnail_name__in=names)
        ).values_list("storage_name", "thumbnail_name")
    )
    in_use = {name for pair in used for name in pair}
    return [name for name in names if name and name not in in_use]


def files_delete_unused(names: list[str]) -> None:
    """Delete these stored files unless an attachment row still uses them."""
    for name in _unreferenced(names):
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete the stored attachment %s", name, exc_info=True)


def _files_store(processed: Processed) -> list[str]:
    """Store the kept bytes (and the thumbnail): their storage names, the kept bytes' first."""
    names: list[str] = []
    try:
        names.append(_store("attachments", processed.stored, processed.extension))
        if processed.thumbnail:
            names.append(_store("attachments/thumbnails", processed.thumbnail, processed.extension))
    except BaseException:
        files_delete_unused(names)
        raise
    return names


def _row_create(
    user: Any,
    visitor_id: str,
    name: str,
    processed: Processed,
    names: list[str],
    source_sha256: str = "",
) -> Attachment:
    signed_in = user is not None and user.is_authenticated
    return Attachment.objects.create(
        user=user if signed_in else None,
        visitor_id="" if signed_in else visitor_id,
        sha256=hashlib.sha256(processed.stored).hexdigest(),
        source_sha256=source_sha256,
        storage_name=names[0],
        thumbnail_name=names[1] if len(names) > 1 else "",
        name=attachment_name_clean(name),
        content_type=processed.content_type,
        size=len(processed.stored),
        kind=processed.kind,
        width=processed.width,
        height=processed.height,
        text=processed.text,
        included=processed.included,
    )


async def attachment_create(
    *, user: Any, visitor_id: str, name: str, processed: Processed, source_sha256: str = ""
) -> Attachment:
    """Store a processed upload's files and its row for its owner; on any failure (or
    cancellation) neither is kept. The files are written on a thread of their own, not the
    database writer's: a 20 MB file must not hold up the replies' saves."""
    names = await asyncio.to_thread(_files_store, processed)
    try:
        return await db_write(_row_create, user, visitor_id, name, processed, names, source_sha256)
    except BaseException:
        await asyncio.shield(db_read(files_delete_unused, names))
        raise


def attachment_of(*, user: Any, visitor_id: str, attachment_id: Any) -> Attachment:
    """The viewer's own attachment, or Attachment.DoesNotExist (also for someone else's)."""
    return Attachment.objects.owned_by(user=user, visitor_id=visitor_id).get(pk=attachment_id)


def attachments_sweep(*, now: Any = None) -> int:
    """Remove uploads never sent that are older than a day (their files go with them when no
    other attachment shares them: chat.attachments.receivers). Returns how many were removed."""
    cutoff = (now or timezone.now()) - UNSENT_KEPT_FOR
    removed, _by_model = Attachment.objects.unsent().filter(created_at__lt=cutoff).delete()
    return removed


TurnFiles = tuple[tuple[TurnImage, ...], tuple[TurnDocument, ...]]


def turn_files(message_ids: list[int]) -> dict[int, TurnFiles]:
    """The images (their stored bytes) and documents (their text) sent with these messages, for
    the model: one query, and one storage read per image."""
    if not message_ids:
        return {}
    images: dict[int, list[TurnImage]] = {}
    documents: dict[int, list[TurnDocument]] = {}
    for attachment in Attachment.objects.filter(message_id__in=message_ids).order_by("created_at"):
        message_id = attachment.message_id
        assert message_id is not None  # noqa: S101 - the filter says so; for the type checker
        if attachment.kind == Attachment.Kind.IMAGE:
            try:
                with default_storage.open(attachment.storage_name, "rb") as stored:
                    data = stored.read()
            except OSError:
                logger.warning("An attached image is missing from storage: %s", attachment.pk)
                continue
            images.setdefault(message_id, []).append(TurnImage(attachment.content_type, data))
        else:
            documents.setdefault(message_id, []).append(
                TurnDocument(attachment.name, attachment.text, attachment.included)
            )
    return {
        message_id: (tuple(images.get(message_id, ())), tuple(documents.get(message_id, ())))
        for message_id in {*images, *documents}
    }
