"""Files posted with a message by the page without JavaScript: the composer's form is multipart
there, with a file input. Each file goes through the same code as the upload endpoint (the limits,
the upload rate, the reading in a child process, the storage), then the send names them like the
page with JavaScript does."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest

from chat.attachments.errors import AttachmentRefused
from chat.attachments.processing import attachment_process
from chat.attachments.store import attachment_create
from chat.conversations.errors import ChatInputError
from chat.conversations.limits import upload_check
from chat.conversations.reads import Visitor
from chat.db import db_read
from chat.web.attachment_views import upload_size_check


def _posted(request: HttpRequest) -> list[UploadedFile]:
    # An empty file input still posts one part, with no name and no bytes: no file chosen.
    return [f for f in request.FILES.getlist("file") if f.name or f.size]


async def posted_attachment_ids(request: HttpRequest, visitor: Visitor) -> list[str]:
    """Store the files posted with a message and return their ids, or raise ChatInputError
    naming the file and saying why (nothing is sent then; files stored before it are swept as
    unsent uploads)."""
    files = await asyncio.to_thread(_posted, request)
    cap = settings.CHAT_MAX_FILES_PER_MESSAGE
    if len(files) > cap:
        raise ChatInputError(
            f"A message can carry at most {cap} file{'' if cap == 1 else 's'}; this one has "
            f"{len(files)}. Remove some and send again."
        )
    ids = []
    for upload in files:
        ids.append(str(await _stored(upload, visitor)))
    return ids


async def _stored(upload: UploadedFile, visitor: Visitor) -> Any:
    name = upload.name or "file"
    try:
        upload_size_check(upload.size or 0)
        await db_read(upload_check, visitor)
        data = await asyncio.to_thread(upload.read)
        processed = await attachment_process(data)
        attachment = await attachment_create(
            user=visitor.user if visitor.is_authenticated else None,
            visitor_id=visitor.visitor_id,
            name=name,
            processed=processed,
        )
    except AttachmentRefused as refused:
        error = ChatInputError(f"{name}: {refused.message}")
        error.status = 413 if refused.status == 413 else 400
        raise error from None
    except ChatInputError as refused:  # the upload rate (429) or the cache being down (503)
        refused.message = f"{name}: {refused.message}"
        raise
    return attachment.pk
