"""Reading attachments back: only their owner may, as a download no browser renders as a page;
unsent uploads are swept after a day; signing in keeps a visitor's uploads."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from chat.conversations.writes import conversations_claim
from chat.models import Attachment, Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/streaming-demo/attachments"
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def visitor_client() -> Client:
    client = Client()
    client.get("/streaming-demo")
    return client


def upload(client: Client, name: str, data: bytes) -> dict:
    response = client.post(UPLOAD, {"file": SimpleUploadedFile(name, data, "text/plain")})
    assert response.status_code == 201, response.content
    return response.json()


def test_the_owner_downloads_the_file_as_an_attachment_never_inline(files):
    client = visitor_client()
    image = upload(client, "photo.png", files.small_image("PNG"))
    page = upload(client, "page.html", b"<html><script>alert(document.cookie)</script></html>")

    response = client.get(image["url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="photo.png"'
    assert all(response[name] == value for name, value in SAFE_HEADERS.items())
    assert response.content.startswith(b"\x89PNG")

    thumbnail = client.get(image["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/png"
    assert thumbnail["Content-Disposition"].startswith("attachment;")
    assert all(thumbnail[name] == value for name, value in SAFE_HEADERS.items())

    # HTML is text to read, served as a download of plain text, in a sandbox.
    html = client.get(page["url"])
    assert html["Content-Type"] == "text/plain"
    assert html["Content-Disposition"] == 'attachment; filename="page.html"'
    assert all(html[name] == value for name, value in SAFE_HEADERS.items())
    assert page["thumbnail_url"] is None


def test_someone_elses_attachment_is_not_found_on_every_path(files):
    owner, stranger = visitor_client(), visitor_client()
    image = upload(owner, "photo.png", files.small_image("PNG"))
    nobody = Client()  # no visitor id at all
    missing = f"{UPLOAD}/{uuid.uuid4()}"

    for client in (stranger, nobody):
        assert client.get(image["url"]).status_code == 404
        assert client.get(image["thumbnail_url"]).status_code == 404
    assert owner.get(missing).status_code == 404
    assert owner.get(f"{missing}/thumbnail").status_code == 404
    # A signed-in user does not see an anonymous visitor's files either.
    user = get_user_model().objects.create_user("ada", password="pw-123456789")
    signed_in = Client()
    signed_in.force_login(user)
    assert signed_in.get(image["url"]).status_code == 404


def test_a_document_has_no_thumbnail():
    client = visitor_client()
    document = upload(client, "notes.txt", b"hello\n")
    assert client.get(f"{document['url']}/thumbnail").status_code == 404


def test_signing_in_keeps_the_visitors_uploads():
    client = visitor_client()
    document = upload(client, "notes.txt", b"hello\n")
    attachment = Attachment.objects.get()
    user = get_user_model().objects.create_user("grace", password="pw-123456789")

    conversations_claim(visitor_id=attachment.visitor_id, user=user)

    signed_in = Client()
    signed_in.force_login(user)
    assert signed_in.get(document["url"]).content == b"hello\n"


def test_unsent_uploads_older_than_a_day_are_swept_with_their_files(media_root, files):
    client = visitor_client()
    shared = files.small_image("PNG")
    old = upload(client, "old.png", shared)
    upload(client, "old-note.txt", b"only in the old upload\n")
    fresh = upload(client, "fresh.png", shared)  # the same bytes: the same stored file
    sent = upload(client, "sent.txt", b"sent with a message\n")
    conversation = Conversation.objects.create(provider="demo", model="demo", visitor_id="v")
    message = Message.objects.create(conversation=conversation, role="user", content="see file")
    Attachment.objects.filter(pk=sent["id"]).update(message=message)
    Attachment.objects.exclude(pk=fresh["id"]).update(
        created_at=timezone.now() - timedelta(days=1, minutes=1)
    )

    out = io.StringIO()
    call_command("sweep_attachments", stdout=out)
    assert out.getvalue().strip() == "2 unsent attachments removed."

    left = set(Attachment.objects.values_list("name", flat=True))
    assert left == {"fresh.png", "sent.txt"}
    assert client.get(old["url"]).status_code == 404
    stored = {path.name for path in media_root.rglob("*") if path.is_file()}
    kept = Attachment.objects.values_list("storage_name", "thumbnail_name")
    assert stored == {Path(name).name for pair in kept for name in pair if name}
    assert client.get(fresh["url"]).status_code == 200


def test_a_purged_conversation_takes_its_files_and_a_kept_one_keeps_them(
    media_root, settings, files, page_visitor
):
    from chat.replies import start as services

    client = visitor_client()
    visitor = page_visitor(client)
    kept = upload(client, "kept.txt", b"kept with the conversation\n")
    purged = upload(client, "purged.txt", b"removed with the conversation\n")
    conversations = []
    for attachment_id in (kept["id"], purged["id"]):
        started = services.reply_start(
            visitor=visitor,
            conversation_id=None,
            text="Read this",
            model_choice="demo:demo",
            attachment_ids=[attachment_id],
        )
        Message.objects.filter(pk=started.assistant_message.pk).update(status="complete")
        conversations.append(started.conversation)

    services.conversation_delete(visitor=visitor, conversation_id=conversations[0].pk)
    settings.CHAT_PURGE_DELETED = True
    services.conversation_delete(visitor=visitor, conversation_id=conversations[1].pk)

    assert list(Attachment.objects.values_list("name", flat=True)) == ["kept.txt"]
    stored = [path for path in media_root.rglob("*") if path.is_file()]
    assert [path.read_bytes() for path in stored] == [b"kept with the conversation\n"]


def test_the_exports_list_and_link_the_files(page_visitor, files):
    import json

    from chat.replies import start as services

    client = visitor_client()
    visitor = page_visitor(client)
    photo = upload(client, "chart.png", files.small_image("PNG"))
    report = upload(client, "report.pdf", files.pdf([["Revenue grew."]]))
    started = services.reply_start(
        visitor=visitor,
        conversation_id=None,
        text="Explain",
        model_choice="demo:demo",
        attachment_ids=[photo["id"], report["id"]],
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(status="complete")
    base = f"/streaming-demo/c/{started.conversation.pk}"

    exported = json.loads(client.get(f"{base}/export.json").content)
    question = next(m for m in exported["messages"] if m["role"] == "user")
    assert [(a["name"], a["kind"], a["url"]) for a in question["attachments"]] == [
        ("chart.png", "image", photo["url"]),
        ("report.pdf", "document", report["url"]),
    ]
    assert question["attachments"][1]["included"] == "all 1 page"

    markdown = client.get(f"{base}/export.md").content.decode()
    assert f"- 📎 [chart.png](<{photo['url']}>) (" in markdown
    assert f"- 📎 [report.pdf](<{report['url']}>) (" in markdown
    assert "the model read all 1 page" in markdown
