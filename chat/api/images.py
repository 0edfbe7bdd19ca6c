"""The images of an API request as attachments of its messages (docs/api.md, "Images").

An API client resends the whole conversation each turn, its images with it. Each image is known
by the SHA-256 of the bytes the client sent, per owner: one already read (in the child process an
upload is read in: re-encoded, metadata removed, sized) is not read or counted against the upload
rate again, its stored file is shared by a new row for this request's message. A new one is read
once per request however many turns carry it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from chat.api.remote import FetchRefused, fetch_image
from chat.api.wire import CompletionRequest, ImagePart, WireError, invalid
from chat.attachments.errors import AttachmentRefused
from chat.attachments.processing import attachment_process
from chat.attachments.store import attachment_create
from chat.conversations.errors import ChatInputError
from chat.conversations.limits import upload_check
from chat.conversations.reads import Visitor
from chat.db import db_read, db_write
from chat.models import Attachment


def _known(user: Any, source_sha256: str) -> Attachment | None:
    return (
        Attachment.objects.filter(
            user=user, source_sha256=source_sha256, kind=Attachment.Kind.IMAGE
        )
        .order_by("-created_at")
        .first()
    )


def _unsent_copy(attachment: Attachment) -> uuid.UUID:
    """A new unsent row sharing `attachment`'s stored files, for one message of this request."""
    attachment.pk = uuid.uuid4()
    attachment._state.adding = True
    attachment.message = None
    attachment.save(force_insert=True)
    return attachment.pk


async def _bytes_of(part: ImagePart) -> bytes:
    if part.data:
        return part.data
    try:
        return await fetch_image(
            part.url,
            max_bytes=settings.CHAT_MAX_UPLOAD_BYTES,
            timeout=settings.CHAT_API_FETCH_TIMEOUT_SECONDS,
        )
    except FetchRefused as refused:
        raise invalid(
            f"The image URL in {part.param} was not fetched: {refused.message}.",
            param=part.param,
            code="image_url_refused",
        ) from None


async def _read(visitor: Visitor, part: ImagePart, data: bytes, digest: str) -> Attachment:
    """Read a new image in the upload's child process and keep it, counted as an upload."""
    try:
        await db_read(upload_check, visitor)
    except ChatInputError as exc:
        raise WireError(
            429,
            f"{exc.message} (an image in {part.param})",
            type="requests",
            code="rate_limit_exceeded",
            retry_after=getattr(exc, "retry_after", None),
        ) from None
    try:
        processed = await attachment_process(data)
    except AttachmentRefused as refused:
        raise invalid(
            f"The image in {part.param} was refused: {refused.message}",
            param=part.param,
            code="invalid_image",
        ) from None
    if processed.kind != Attachment.Kind.IMAGE:
        raise invalid(
            f"{part.param} is not an image (its bytes read as {processed.content_type}). Send "
            "a JPEG, PNG, WebP or GIF.",
            param=part.param,
            code="invalid_image",
        )
    return await attachment_create(
        user=visitor.user,
        visitor_id="",
        name=f"image.{processed.extension}",
        processed=processed,
        source_sha256=digest,
    )


async def request_images_attach(
    visitor: Visitor, request: CompletionRequest
) -> tuple[list[uuid.UUID], list[list[uuid.UUID]]]:
    """Unsent attachments of `visitor` for the request's images: the last message's ids, and
    each earlier turn's (only the turns a reply is sent with: CHAT_HISTORY_MAX_MESSAGES)."""
    kept = settings.CHAT_HISTORY_MAX_MESSAGES
    history_images: Sequence[tuple[ImagePart, ...]] = request.history_images
    dropped = max(0, len(history_images) - kept)
    turns = [*([()] * dropped), *history_images[dropped:], request.images]
    read_now: dict[str, Attachment] = {}  # read in this request: its first turn takes the row
    ids: list[list[uuid.UUID]] = []
    for parts in turns:
        turn_ids: list[uuid.UUID] = []
        for part in parts:
            data = await _bytes_of(part)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in read_now:
                known = await db_read(_known, visitor.user, digest)
                if known is None:
                    read_now[digest] = await _read(visitor, part, data, digest)
                    turn_ids.append(read_now[digest].pk)
                    continue
                read_now[digest] = known
            turn_ids.append(await db_write(_unsent_copy, read_now[digest]))
        ids.append(turn_ids)
    return ids[-1], ids[:-1]
