"""Files as a message shows them: an image's thumbnail (opening a larger view), a document's card
(its kind, name, size and what the model read). One query for a whole branch, made only when a
message on it was sent with files; the URLs are the chat's downloads, or a snapshot's own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import prefetch_related_objects
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from chat.models import Attachment, Message

# What a document card says it is, by the type read from its bytes.
_LABELS = {
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "DOCX",
    "text/markdown": "MD",
    "text/csv": "CSV",
    "application/json": "JSON",
}


@dataclass(frozen=True)
class ShownFile:
    id: str
    name: str
    kind: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    included: str
    url: str
    thumbnail_url: str

    @property
    def is_image(self) -> bool:
        return self.kind == Attachment.Kind.IMAGE

    @property
    def label(self) -> str:
        """A short name for the kind of document: PDF, DOCX, CSV… (TXT for other text)."""
        if self.content_type in _LABELS:
            return _LABELS[self.content_type]
        extension = self.name.rpartition(".")[2] if "." in self.name else ""
        if extension and len(extension) <= 4 and extension.isalnum():
            return extension.upper()
        return "TXT"

    @property
    def size_words(self) -> str:
        return str(filesizeformat(self.size)).replace("\xa0", " ")

    def as_snapshot(self) -> dict[str, Any]:
        """What a snapshot keeps of the file (its URLs are the snapshot's own)."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "content_type": self.content_type,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "included": self.included,
            "thumbnail": bool(self.thumbnail_url),
        }


def _chat_url(attachment_id: str, thumbnail: bool) -> str:
    name = "chat:attachment_thumbnail" if thumbnail else "chat:attachment"
    return reverse(name, args=[attachment_id])


UrlOf = Callable[[str, bool], str]


def shown_file(attachment: Attachment, url_of: UrlOf = _chat_url) -> ShownFile:
    attachment_id = str(attachment.pk)
    return ShownFile(
        id=attachment_id,
        name=attachment.name,
        kind=attachment.kind,
        content_type=attachment.content_type,
        size=attachment.size,
        width=attachment.width,
        height=attachment.height,
        included=attachment.included,
        url=url_of(attachment_id, False),
        thumbnail_url=url_of(attachment_id, True) if attachment.thumbnail_name else "",
    )


def snapshot_file(record: dict[str, Any], url_of: UrlOf) -> ShownFile:
    """A file as a snapshot recorded it (`ShownFile.as_snapshot`), with the snapshot's URLs."""
    attachment_id = str(record.get("id", ""))
    return ShownFile(
        id=attachment_id,
        name=str(record.get("name", "")),
        kind=str(record.get("kind", "")),
        content_type=str(record.get("content_type", "")),
        size=int(record.get("size") or 0),
        width=record.get("width"),
        height=record.get("height"),
        included=str(record.get("included", "")),
        url=url_of(attachment_id, False),
        thumbnail_url=url_of(attachment_id, True) if record.get("thumbnail") else "",
    )


def files_prefetch(messages: Iterable[Message]) -> None:
    """Read the files of every message in `messages` sent with some, in one query (none when no
    message was), so `message_files` asks nothing more."""
    with_files = [m for m in messages if m.has_attachments]
    if with_files:
        prefetch_related_objects(with_files, "attachments")


def message_files(message: Message, url_of: UrlOf = _chat_url) -> Sequence[ShownFile]:
    """The files a user message was sent with, oldest first (from `files_prefetch`'s read when
    it was made, else one query)."""
    if message.role != Message.Role.USER or not message.has_attachments:
        return ()
    attachments = sorted(message.attachments.all(), key=lambda a: (a.created_at, str(a.pk)))
    return tuple(shown_file(a, url_of) for a in attachments)
