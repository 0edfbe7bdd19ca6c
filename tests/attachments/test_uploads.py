"""Uploading attachments: what is kept of each kind of file, and every hostile or awkward file
refused in words with nothing half-stored (no row, no stored file)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from chat.models import Attachment

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/streaming-demo/attachments"


@pytest.fixture
def client() -> Client:
    client = Client()
    client.get("/streaming-demo")  # becomes an anonymous visitor
    return client


def upload(client: Client, name: str, data: bytes, content_type: str = "image/png"):
    return client.post(UPLOAD, {"file": SimpleUploadedFile(name, data, content_type)})


def stored_files(media_root: Path) -> list[Path]:
    return [path for path in media_root.rglob("*") if path.is_file()] if media_root.exists() else []


def assert_refused(response, media_root: Path, *, status: int, words: str) -> None:
    assert response.status_code == status, response.content
    assert words in response.json()["error"]
    assert Attachment.objects.count() == 0
    assert stored_files(media_root) == []


def stored_image(attachment: Attachment, media_root: Path) -> Image.Image:
    return Image.open(media_root / attachment.storage_name)


# --- Images ---------------------------------------------------------------------------------


def test_a_12_megapixel_photo_loses_its_gps_is_turned_upright_and_scaled(client, media_root, files):
    response = upload(client, "IMG_0001.JPG", files.photo_with_gps())

    assert response.status_code == 201, response.content
    body = response.json()
    attachment = Attachment.objects.get(pk=body["id"])
    assert body["kind"] == "image" and body["name"] == "IMG_0001.JPG"
    # 4000 × 3000 with "rotate 90°" is a portrait photo: 1536 × 2048 once scaled.
    assert (attachment.width, attachment.height) == (1536, 2048)
    image = stored_image(attachment, media_root)
    assert image.format == "JPEG" and image.size == (1536, 2048)
    exif = image.getexif()
    assert not exif.get_ifd(files.GPS_IFD) and files.ORIENTATION not in exif and not exif
    # The red corner was top-left before the turn: now it is top-right.
    assert image.getpixel((1536 - 20, 20))[0] > 200 and image.getpixel((20, 20))[0] < 100
    assert body["thumbnail_url"].endswith("/thumbnail")
    assert max(Image.open(media_root / attachment.thumbnail_name).size) <= 320
    assert attachment.sha256 and attachment.storage_name.endswith(f"{attachment.sha256}.jpg")


@pytest.mark.parametrize(
    ("fmt", "stored_format"), [("PNG", "PNG"), ("WEBP", "JPEG"), ("GIF", "JPEG")]
)
def test_png_webp_and_gif_are_re_encoded(client, media_root, files, fmt, stored_format):
    data = files.animated_gif() if fmt == "GIF" else files.small_image(fmt)
    response = upload(client, f"picture.{fmt.lower()}", data)

    assert response.status_code == 201, response.content
    attachment = Attachment.objects.get()
    assert stored_image(attachment, media_root).format == stored_format
    assert attachment.content_type == f"image/{stored_format.lower()}"


def test_a_png_decompression_bomb_is_refused_before_decoding(client, media_root, files):
    response = upload(client, "bomb.png", files.png_bomb())
    assert_refused(
        response, media_root, status=400, words="10,000 × 10,000 pixels is more than the 50"
    )


def test_a_jpeg_with_html_appended_keeps_only_its_pixels(client, media_root, files):
    hostile = files.small_image("JPEG") + b"<html><script>alert(document.cookie)</script></html>"
    response = upload(client, "cat.jpg", hostile)

    assert response.status_code == 201
    stored = (media_root / Attachment.objects.get().storage_name).read_bytes()
    assert b"<script" not in stored and b"<html" not in stored


def test_an_executable_renamed_png_is_refused(client, media_root, files):
    response = upload(client, "holiday.png", files.EXECUTABLE)
    assert_refused(response, media_root, status=400, words="This kind of file is not supported")


def test_an_svg_with_a_script_is_refused(client, media_root, files):
    response = upload(client, "logo.svg", files.SVG_WITH_SCRIPT, "image/svg+xml")
    assert_refused(response, media_root, status=400, words="SVG images are not supported")


def test_a_heic_photo_is_refused_with_what_to_do(client, media_root, files):
    response = upload(client, "IMG_0002.HEIC", files.HEIC, "image/heic")
    assert_refused(response, media_root, status=400, words="Export the photo as JPEG")


def test_a_damaged_image_is_refused(client, media_root, files):
    response = upload(client, "broken.png", files.small_image("PNG")[:60])
    assert_refused(response, media_root, status=400, words="This image could not be read")


# --- Documents ------------------------------------------------------------------------------


def test_a_300_page_pdf_is_capped_at_whole_pages_in_time(client, media_root, settings, files):
    settings.CHAT_ATTACHMENT_MAX_TOKENS = 20_000  # about 80,000 characters: 40 pages of 2,000

    response = upload(client, "report.pdf", files.long_pdf(300), "application/pdf")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "document" and body["thumbnail_url"] is None
    included = re.fullmatch(r"pages 1–(\d+) of 300", body["included"])
    assert included, body["included"]
    last = int(included[1])
    assert 38 <= last <= 41  # whole pages of about 2,000 characters
    attachment = Attachment.objects.get()
    assert attachment.text.startswith("Page 1.") and f"Page {last}." in attachment.text
    assert f"Page {last + 1}." not in attachment.text and len(attachment.text) <= 80_000
    assert attachment.content_type == "application/pdf"


def test_a_short_pdf_is_included_whole(client, settings, files):
    response = upload(client, "note.pdf", files.pdf([["Hello"], ["World"]]), "application/pdf")
    assert response.json()["included"] == "all 2 pages"
    assert Attachment.objects.get().text == "Hello\n\nWorld"


def test_a_corrupt_pdf_is_refused(client, media_root):
    corrupt = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\n" + bytes(range(256)) * 8
    response = upload(client, "scan.pdf", corrupt, "application/pdf")
    assert_refused(response, media_root, status=400, words="This PDF could not be read")


def test_a_word_document_becomes_its_text(client, files):
    data = files.docx(["Minutes of the meeting", "", "Decisions: ship it."])
    response = upload(client, "minutes.docx", data, "application/octet-stream")

    assert response.status_code == 201, response.content
    assert response.json()["included"] == "all 2 paragraphs"
    assert Attachment.objects.get().text == "Minutes of the meeting\n\nDecisions: ship it."


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.md", b"# Title\n\n- one\n- two\n"),
        ("table.csv", b"name,age\nAda,36\n"),
        ("data.json", b'{"a": [1, 2]}'),
        ("main.rs", 'fn main() { println!("héllo"); }\n'.encode()),
        ("windows.txt", "caf\xe9 cr\xe8me\r\n".encode("cp1252")),
    ],
)
def test_text_markdown_csv_json_and_code_are_read_as_text(client, name, data):
    response = upload(client, name, data, "text/plain")

    assert response.status_code == 201, response.content
    attachment = Attachment.objects.get()
    assert attachment.kind == "document" and attachment.content_type == "text/plain"
    assert response.json()["included"].startswith("all ")
    assert attachment.text.strip() and "\x00" not in attachment.text


def test_a_long_text_file_is_cut_at_whole_lines(client, settings):
    settings.CHAT_ATTACHMENT_MAX_TOKENS = 100  # 400 characters
    data = "".join(
        f"line {n:03d} of the log\n" for n in range(1, 1001)
    ).encode()  # 19 and a newline each

    response = upload(client, "app.log", data, "text/plain")

    assert response.json()["included"] == "lines 1–20 of 1,000"
    assert Attachment.objects.get().text.endswith("line 020 of the log")


def test_a_path_in_the_name_is_display_text_only(client, media_root):
    response = upload(client, "../../settings.py", b"SECRET_KEY = 'x'\n", "text/x-python")

    assert response.status_code == 201
    attachment = Attachment.objects.get()
    assert attachment.name == "settings.py" and response.json()["name"] == "settings.py"
    (stored,) = stored_files(media_root)
    assert stored.name == f"{attachment.sha256}.txt" and media_root in stored.parents


def test_an_empty_file_is_refused(client, media_root):
    assert_refused(upload(client, "empty.txt", b""), media_root, status=400, words="empty")


def test_the_size_limit_plus_one_byte_is_refused(client, media_root, settings):
    settings.CHAT_MAX_UPLOAD_BYTES = 1000
    response = upload(client, "big.txt", b"a" * 1001, "text/plain")
    assert_refused(response, media_root, status=413, words="more than the 1000 bytes allowed")

    assert upload(client, "fits.txt", b"a" * 1000, "text/plain").status_code == 201


def test_a_body_far_over_the_limit_is_refused_before_it_is_parsed(client, media_root, settings):
    settings.CHAT_MAX_UPLOAD_BYTES = 1000
    response = upload(client, "huge.txt", b"a" * 200_000, "text/plain")
    assert_refused(response, media_root, status=413, words="allowed")


def test_one_file_per_request(client, media_root):
    response = client.post(
        UPLOAD,
        {
            "file": [
                SimpleUploadedFile("a.txt", b"a", "text/plain"),
                SimpleUploadedFile("b.txt", b"b", "text/plain"),
            ]
        },
    )
    assert_refused(response, media_root, status=400, words="one file per request")
    assert_refused(client.post(UPLOAD, {}), media_root, status=400, words="one file")


# --- Limits on the reader ---------------------------------------------------------------------


def test_a_file_that_takes_too_long_to_read_is_refused(client, media_root, settings, files):
    settings.CHAT_ATTACHMENT_TIMEOUT_SECONDS = 0.01
    response = upload(client, "report.pdf", files.long_pdf(20), "application/pdf")
    assert_refused(response, media_root, status=400, words="took longer than 0.01 seconds")


def test_a_file_that_needs_too_much_memory_is_refused(client, media_root, settings, files):
    settings.CHAT_ATTACHMENT_MEMORY_MB = 64
    response = upload(client, "IMG_0001.JPG", files.photo_with_gps(), "image/jpeg")
    assert_refused(response, media_root, status=400, words="needs more memory")


# --- Storage --------------------------------------------------------------------------------


def test_identical_bytes_are_stored_once(client, media_root, files):
    data = files.small_image("PNG")
    first = upload(client, "a.png", data).json()
    second = upload(client, "b.png", data).json()

    assert first["id"] != second["id"]
    assert len({a.storage_name for a in Attachment.objects.all()}) == 1
    assert len(stored_files(media_root)) == 2  # the image and its thumbnail


# --- Rates and forms ------------------------------------------------------------------------


def test_uploads_past_the_rate_are_refused_with_the_wait(client, media_root, settings):
    settings.CHAT_UPLOAD_RATE_LIMIT = "2/m"
    for name in ("a.txt", "b.txt"):
        assert upload(client, name, name.encode(), "text/plain").status_code == 201

    response = upload(client, "c.txt", b"c", "text/plain")

    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert "attaching files too quickly" in response.json()["error"]
    assert Attachment.objects.count() == 2


def test_an_upload_without_the_csrf_token_is_refused(media_root):
    client = Client(enforce_csrf_checks=True)
    client.get("/streaming-demo")
    response = upload(client, "a.txt", b"hello", "text/plain")
    assert response.status_code == 403
    assert Attachment.objects.count() == 0 and stored_files(media_root) == []


def test_the_answer_is_json_with_what_was_kept(client):
    response = upload(client, "notes.txt", b"one\ntwo\n", "text/plain")
    body = json.loads(response.content)
    assert set(body) >= {"id", "name", "size", "kind", "thumbnail_url", "included"}
    assert body["size"] == 8 and body["included"] == "all 2 lines"


def test_an_image_upload_is_decoded_from_its_bytes_not_its_name(client):
    out = io.BytesIO()
    Image.new("RGB", (30, 20)).save(out, format="PNG")
    response = upload(client, "document.pdf", out.getvalue(), "application/pdf")
    assert response.json()["kind"] == "image"


def test_a_garbled_content_length_is_not_a_server_error(client, media_root):
    response = client.post(
        UPLOAD,
        {"file": SimpleUploadedFile("a.txt", b"hello", "text/plain")},
        headers={"Content-Length": "lots"},
    )
    assert response.status_code < 500


def test_with_sign_in_required_anonymous_uploads_are_refused(client, media_root, settings):
    settings.CHAT_REQUIRE_LOGIN = True
    response = upload(client, "a.txt", b"hello", "text/plain")
    assert_refused(response, media_root, status=403, words="Sign in to attach files")


async def test_an_uploads_body_is_parsed_off_the_event_loop(media_root, monkeypatch):
    """The CSRF check reads its token from the parsed body (its process_view runs through
    Django's thread adapter) and the view reads the file on a thread: a 20 MB parse (35–75 ms)
    never holds the loop that streams replies."""
    import asyncio

    from django.http.multipartparser import MultiPartParser
    from django.test import AsyncClient

    parsed_on_loop: list[bool] = []
    real_parse = MultiPartParser.parse

    def parse(self):
        try:
            asyncio.get_running_loop()
            parsed_on_loop.append(True)
        except RuntimeError:
            parsed_on_loop.append(False)
        return real_parse(self)

    monkeypatch.setattr(MultiPartParser, "parse", parse)
    client = AsyncClient(enforce_csrf_checks=True)
    await client.get("/streaming-demo")
    token = client.cookies["csrftoken"].value
    response = await client.post(
        UPLOAD,
        {"file": SimpleUploadedFile("a.txt", b"hello\n", "text/plain")},
        headers={"X-CSRFToken": token},
    )

    assert response.status_code == 201, response.content
    assert parsed_on_loop == [False]
