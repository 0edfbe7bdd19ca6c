"""Documents as text: plain text (Markdown, code, CSV, JSON), PDF through PDFium (pypdfium2:
about half pypdf's time and memory on a 300-page file, docs/performance.md) and Word documents
through python-docx. The text is cut at whole pages, paragraphs or lines to fit `max_chars`, and
what was included is said in words: "pages 1–40 of 300"."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chat.attachments.errors import AttachmentRefused


@dataclass(frozen=True)
class ExtractedText:
    text: str
    included: str
    content_type: str
    extension: str


def _plural(count: int, unit: str) -> str:
    return f"{count:,} {unit}{'' if count == 1 else 's'}"


def _take(
    parts: Iterable[str], total: int, unit: str, *, max_chars: int, sep: str
) -> tuple[str, str]:
    """Whole parts (pages, paragraphs, lines) while they fit in `max_chars`; the first part is
    cut if even it does not fit. Returns the text and what it holds in words."""
    taken: list[str] = []
    length = 0
    for part in parts:
        extra = len(part) + (len(sep) if taken else 0)
        if length + extra > max_chars:
            if not taken:
                return part[:max_chars], f"the start of {unit} 1 of {total:,}"
            break
        taken.append(part)
        length += extra
    if len(taken) >= total:
        return sep.join(taken), f"all {_plural(total, unit)}"
    return sep.join(taken), f"{unit}s 1–{len(taken):,} of {total:,}"


def _decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Older Windows tools write CSV and text in cp1252; control bytes say it is binary.
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = ""
            if text and not any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
                return text
    raise AttachmentRefused(
        "This file is not text chatsite can read (it is not UTF-8) and not an image, PDF or Word "
        "document."
    )


def text_extract(path: Path, *, max_chars: int) -> ExtractedText:
    text = _decode_text(path.read_bytes())
    if not text.strip():
        raise AttachmentRefused("The file has no text in it.")
    lines = text.splitlines()
    body, included = _take(lines, len(lines), "line", max_chars=max_chars, sep="\n")
    return ExtractedText(body, included, "text/plain", "txt")


def _pdf_pages(pdf: object, count: int) -> Iterator[str]:
    for index in range(count):
        page = pdf[index]  # type: ignore[index]
        textpage = page.get_textpage()
        try:
            yield textpage.get_text_bounded().replace("\r\n", "\n").strip()
        finally:
            textpage.close()
            page.close()


def pdf_extract(path: Path, *, max_chars: int) -> ExtractedText:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise AttachmentRefused(
                "This PDF is protected by a password. Save a copy without it and attach that."
            ) from exc
        raise AttachmentRefused("This PDF could not be read: it may be damaged.") from exc
    try:
        count = len(pdf)
        if count == 0:
            raise AttachmentRefused("This PDF has no pages.")
        try:
            body, included = _take(
                _pdf_pages(pdf, count), count, "page", max_chars=max_chars, sep="\n\n"
            )
        except pdfium.PdfiumError as exc:
            raise AttachmentRefused("This PDF could not be read: it may be damaged.") from exc
    finally:
        pdf.close()
    if not body.strip():
        raise AttachmentRefused(
            "This PDF has no text to read (it may be scanned pages). Attach the pages as images, "
            "or a PDF with text."
        )
    return ExtractedText(body, included, "application/pdf", "pdf")


def docx_extract(path: Path, *, max_chars: int) -> ExtractedText:
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises whatever the zip or XML reader raised
        raise AttachmentRefused("This Word document could not be read: it may be damaged.") from exc
    paragraphs = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" | ".join(cell.text.strip() for cell in row.cells))
    if not paragraphs:
        raise AttachmentRefused("This Word document has no text in it.")
    body, included = _take(
        paragraphs, len(paragraphs), "paragraph", max_chars=max_chars, sep="\n\n"
    )
    return ExtractedText(
        body,
        included,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    )
