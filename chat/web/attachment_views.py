"""Attachments over HTTP: the upload (one file per multipart POST, answered in JSON) and the
downloads (the file and an image's thumbnail): for the person who uploaded it, and once it is
sent, for whoever sees its conversation (the members it is shared with) and staff.

Stored files are served as downloads that a browser will not render as a page: `Content-
Disposition: attachment`, `X-Content-Type-Options: nosniff` and a sandboxing CSP that allows
nothing (docs/security.md), whatever the file holds.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from chat.attachments.errors import AttachmentRefused, AttachmentTooLarge
from chat.attachments.processing import attachment_process
from chat.attachments.store import attachment_create
from chat.conversations.errors import ChatInputError
from chat.conversations.limits import request_client_ip, upload_check
from chat.conversations.reads import Visitor, visible_to
from chat.conversations.snapshots import snapshot_attachment
from chat.db import db_read
from chat.models import Attachment
from chat.web.visitors import visitor_id_ensure, visitor_id_of

DOWNLOAD_CSP = "default-src 'none'; sandbox"


def size_words(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


def _refusal(message: str, status: int, retry_after: int | None = None) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def _uploader(request: HttpRequest) -> Visitor:
    visitor_id = "" if request.user.is_authenticated else visitor_id_ensure(request)
    return Visitor(user=request.user, visitor_id=visitor_id, client_ip=request_client_ip(request))


def _viewer(request: HttpRequest) -> tuple[Any, str]:
    # Reading a file mints no visitor id: someone without one owns nothing.
    return request.user, "" if request.user.is_authenticated else visitor_id_of(request)


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "size": attachment.size,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "width": attachment.width,
        "height": attachment.height,
        "included": attachment.included,
        "url": reverse("chat:attachment", args=[attachment.pk]),
        "thumbnail_url": reverse("chat:attachment_thumbnail", args=[attachment.pk])
        if attachment.thumbnail_name
        else None,
    }


def _upload_file(request: HttpRequest) -> Any:
    """The one file of the request, or AttachmentRefused saying what is wrong with it."""
    files = request.FILES.getlist("file")
    if len(files) != 1 or len(request.FILES) != 1:
        raise AttachmentRefused("Send one file per request, in the form field named file.")
    upload = files[0]
    upload_size_check(upload.size or 0)
    return upload


def upload_size_check(size: int) -> None:
    """Refuse, in words, a file over CHAT_MAX_UPLOAD_BYTES or an empty one."""
    limit = settings.CHAT_MAX_UPLOAD_BYTES
    if size > limit:
        raise AttachmentTooLarge(
            f"This file is {size_words(size)}: more than the {size_words(limit)} "
            "allowed. Attach a smaller file."
        )
    if not size:
        raise AttachmentRefused("The file is empty.")


@require_POST
async def upload(request: HttpRequest) -> HttpResponse:
    """Take one attached file (multipart, field `file`): 201 with what was kept, or 400 / 413 /
    429 with the reason in words and nothing stored."""
    user = await request.auser()
    if settings.CHAT_REQUIRE_LOGIN and not user.is_authenticated:
        return _refusal("Sign in to attach files.", 403)
    # Refused before the body is parsed: more than the limit is not worth reading.
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.CHAT_MAX_UPLOAD_BYTES + 64 * 1024:
        return _refusal(
            f"This file is more than the {size_words(settings.CHAT_MAX_UPLOAD_BYTES)} "
            "allowed. Attach a smaller file.",
            413,
        )
    visitor = await db_read(_uploader, request)
    try:
        await db_read(upload_check, visitor)
        upload_file = await asyncio.to_thread(_upload_file, request)
        data = await asyncio.to_thread(upload_file.read)
        processed = await attachment_process(data)
        attachment = await attachment_create(
            user=visitor.user if visitor.is_authenticated else None,
            visitor_id=visitor.visitor_id,
            name=upload_file.name or "",
            processed=processed,
        )
    except AttachmentRefused as refused:
        return _refusal(refused.message, refused.status)
    except ChatInputError as refused:  # the upload rate (429) or the cache being down (503)
        return _refusal(refused.message, refused.status, getattr(refused, "retry_after", None))
    return JsonResponse(attachment_json(attachment), status=201)


def _is_owner(attachment: Attachment, user: Any, visitor_id: str) -> bool:
    if user is not None and user.is_authenticated:
        return bool(attachment.user_id == user.pk)
    return bool(visitor_id and attachment.user_id is None and attachment.visitor_id == visitor_id)


def _is_staff_reader(user: Any) -> bool:
    """Staff who may read transcripts in the admin may open the files sent in them."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm("chat.view_conversation")
    )


def _viewable(request: HttpRequest, attachment_id: uuid.UUID) -> Attachment:
    """The attachment if this viewer may read it, else Http404. Its uploader may, always; once
    it is sent with a message, so may everyone who sees that message's conversation (its owner,
    the members it is shared with) and staff who read transcripts. An upload not yet sent is
    its uploader's alone."""
    user, visitor_id = _viewer(request)
    attachment = (
        Attachment.objects.select_related("message__conversation").filter(pk=attachment_id).first()
    )
    if attachment is None:
        raise Http404("No such attachment.")
    if _is_owner(attachment, user, visitor_id):
        return attachment
    message = attachment.message
    if message is not None and (
        _is_staff_reader(user)
        or (
            message.deleted_at is None
            and visible_to(Visitor(user=user, visitor_id=visitor_id), message.conversation)
        )
    ):
        return attachment
    # The same answer for a file one may not see as for none: ids reveal nothing.
    raise Http404("No such attachment.")


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as stored:
        return stored.read()


def _download(data: bytes, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    response["Cache-Control"] = "private, max-age=3600"
    return response


async def _serve(attachment: Attachment, *, thumbnail: bool) -> HttpResponse:
    if thumbnail and not attachment.thumbnail_name:
        raise Http404("This attachment has no thumbnail.")
    name = attachment.thumbnail_name if thumbnail else attachment.storage_name
    try:
        data = await asyncio.to_thread(_read, name)
    except OSError:
        raise Http404("The file is missing from storage.") from None
    filename = attachment.name
    if thumbnail:
        stem = attachment.name.rsplit(".", 1)[0] or "image"
        extension = "png" if attachment.content_type == "image/png" else "jpg"
        filename = f"{stem}-thumbnail.{extension}"
    return _download(data, content_type=attachment.content_type, filename=filename)


@require_GET
async def download(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """The stored file (a re-encoded image, or the document as uploaded), as a download."""
    return await _serve(await db_read(_viewable, request, attachment_id), thumbnail=False)


@require_GET
async def thumbnail(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """A small copy of an image (for the chip and the message); 404 for documents."""
    return await _serve(await db_read(_viewable, request, attachment_id), thumbnail=True)


def _snapshot_held(request: HttpRequest, token: str, attachment_id: uuid.UUID) -> Attachment:
    if not settings.CHAT_PUBLIC_SHARES and not request.user.is_authenticated:
        raise Http404("No such file.")  # the page itself asks such a visitor to sign in
    return snapshot_attachment(token, attachment_id)


@require_GET
async def snapshot_download(
    request: HttpRequest, token: str, attachment_id: uuid.UUID
) -> HttpResponse:
    """A file of a published snapshot (`/s/<token>/files/<id>`): only the files that snapshot
    holds, only while its link works."""
    return await _serve(
        await db_read(_snapshot_held, request, token, attachment_id), thumbnail=False
    )


@require_GET
async def snapshot_thumbnail(
    request: HttpRequest, token: str, attachment_id: uuid.UUID
) -> HttpResponse:
    return await _serve(
        await db_read(_snapshot_held, request, token, attachment_id), thumbnail=True
    )
