"""What a file is, decided from its first bytes: never from its name or the browser's claim."""

from __future__ import annotations

from dataclasses import dataclass

from chat.attachments.errors import AttachmentRefused

IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}

UNSUPPORTED = (
    "This kind of file is not supported. Attach a photo (JPEG, PNG, WebP or GIF), a PDF, a Word "
    "document (.docx) or a text file (text, Markdown, code, CSV or JSON)."
)


@dataclass(frozen=True)
class Sniffed:
    # "image:JPEG" and the like, "pdf", "docx" or "text".
    format: str


def _is_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in {
        b"heic",
        b"heix",
        b"hevc",
        b"hevx",
        b"heim",
        b"heis",
        b"mif1",
        b"msf1",
        b"avif",
    }


def _looks_like_markup(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in head.lower())


def sniff(head: bytes, *, zip_names: frozenset[str] | None = None) -> Sniffed:
    """The file's format from its first few kilobytes, or AttachmentRefused naming why not."""
    if not head:
        raise AttachmentRefused("The file is empty.")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image:JPEG")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image:PNG")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("image:GIF")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image:WEBP")
    if _is_heif(head):
        raise AttachmentRefused(
            "HEIC and AVIF photos are not supported yet. Export the photo as JPEG (on an iPhone: "
            "Settings → Camera → Formats → Most Compatible) and attach it again."
        )
    if head.startswith(b"%PDF-"):
        return Sniffed("pdf")
    if head.startswith(b"PK\x03\x04"):
        if zip_names is not None and "word/document.xml" in zip_names:
            return Sniffed("docx")
        raise AttachmentRefused(
            "Archives and Office files other than Word documents (.docx) are not supported."
        )
    if _looks_like_markup(head):
        raise AttachmentRefused(
            "SVG images are not supported (they can carry scripts). Export the image as PNG or "
            "JPEG and attach it again."
        )
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise AttachmentRefused(UNSUPPORTED)
    return Sniffed("text")
