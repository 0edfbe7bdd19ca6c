"""Files shown in sent messages: the server renders them in the user's message fragment (live,
after a reload, after an edit), to a shared conversation's members, in the staff transcript and
in snapshot links; the downloads follow who may see the message (404 for everyone else)."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat.conversations import snapshots
from chat.conversations.reads import Visitor
from chat.models import Attachment, ConversationMember, Message
from chat.replies import start as services
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/streaming-demo/attachments"
SEND = "/streaming-demo/messages"
HTMX = {"HX-Request": "true"}


def _files_of(html: str) -> str:
    """The list of files one message shows (the first in `html`)."""
    found = re.search(r'<ul class="msg-files".*?</ul>', html, re.S)
    assert found, "no files shown"
    return found.group(0)


def _assert_shows(html: str, photo: dict, report: dict) -> None:
    shown = _files_of(html)
    # The image: its thumbnail, a link that opens the larger view (the file itself without JS).
    assert f'src="{photo["thumbnail_url"]}"' in shown
    assert f'href="{photo["url"]}" data-file-open data-full="{photo["url"]}"' in shown
    assert 'aria-label="View cat.png"' in shown and 'aria-haspopup="dialog"' in shown
    # The document: a card with its kind, name, size, what the model read, and Download.
    card = shown[shown.index('class="msg-file msg-file-document"') :]
    assert ">PDF</span>" in card and ">report.pdf</span>" in card
    assert re.search(r"\d+(\.\d)? (bytes|KB) · all 1 page", card)
    assert f'href="{report["url"]}" download aria-label="Download report.pdf"' in card


async def _upload(client, name: str, data: bytes) -> dict:
    response = await client.post(UPLOAD, {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 201, response.content
    return response.json()


async def test_a_sent_message_shows_its_files_live_after_a_reload_and_after_an_edit(
    async_client, apage_visitor, files
):
    await apage_visitor(async_client)
    photo = await _upload(async_client, "cat.png", files.small_image("PNG", (400, 300)))
    report = await _upload(async_client, "report.pdf", files.pdf([["Revenue grew 12%."]]))

    # Live: the fragment the send answers with (the same one WebSocket and SSE pages get).
    live = await async_client.post(
        SEND,
        {"action": "send", "message": "Look", "model": "demo:demo",
         "attachment": [photo["id"], report["id"]]},
        headers=HTMX,
    )  # fmt: skip
    await asyncio.gather(*live_jobs())
    assert live.status_code == 200
    _assert_shows(live.content.decode(), photo, report)

    question = await Message.objects.select_related("conversation").aget(role="user")
    page = await async_client.get(f"/streaming-demo/c/{question.conversation_id}")
    _assert_shows(page.content.decode(), photo, report)

    # An edit is sent with the same files (rows of its own), and shows them.
    edited = await async_client.post(
        f"/streaming-demo/messages/{question.pk}/edit", {"message": "Look again"}, headers=HTMX
    )
    await asyncio.gather(*live_jobs())
    assert edited.status_code == 200
    new_version = await Message.objects.filter(role="user").exclude(pk=question.pk).aget()
    copies = [a async for a in Attachment.objects.filter(message=new_version)]
    by_name = {a.name: str(a.pk) for a in copies}
    html = edited.content.decode()
    assert f"/streaming-demo/attachments/{by_name['cat.png']}/thumbnail" in html
    assert f"/streaming-demo/attachments/{by_name['report.pdf']}" in html
    for copy_id in by_name.values():  # the copies open for their owner like the originals
        assert (await async_client.get(f"/streaming-demo/attachments/{copy_id}")).status_code == 200


async def test_a_message_of_files_alone_shows_no_empty_bubble(async_client, apage_visitor, files):
    await apage_visitor(async_client)
    notes = await _upload(async_client, "notes.md", b"# Plan\n\nShip on Friday.\n")

    live = await async_client.post(
        SEND,
        {"action": "send", "message": "", "model": "demo:demo", "attachment": [notes["id"]]},
        headers=HTMX,
    )
    await asyncio.gather(*live_jobs())

    html = live.content.decode()
    user_bubble = html[html.index('data-role="user"') : html.index('data-role="assistant"')]
    assert 'class="msg-text plain"' not in user_bubble
    assert ">MD</span>" in user_bubble and "all 3 lines" in user_bubble


# --- Who may see them --------------------------------------------------------------------------


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _upload_sync(client: Client, name: str, data: bytes) -> dict:
    response = client.post(UPLOAD, {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def shared(files):
    """Ana's conversation with a photo and a report sent, shared with Ben; Cy is a stranger."""
    ana, ben, cy = (User.objects.create_user(name) for name in ("ana", "ben", "cy"))
    owner = _client(ana)
    photo = _upload_sync(owner, "cat.png", files.small_image("PNG", (400, 300)))
    report = _upload_sync(owner, "report.pdf", files.pdf([["Revenue grew 12%."]]))
    started = services.reply_start(
        visitor=Visitor(user=ana, visitor_id=""),
        conversation_id=None,
        text="Look",
        model_choice="demo:demo",
        attachment_ids=[photo["id"], report["id"]],
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="A cat and a report."
    )
    conversation = started.conversation
    ConversationMember.objects.create(conversation=conversation, user=ben)
    return {
        "conversation": conversation,
        "ana": ana,
        "ben": ben,
        "cy": cy,
        "owner": owner,
        "photo": photo,
        "report": report,
    }


def test_a_member_sees_and_downloads_the_files_a_stranger_gets_404(shared):
    photo, report = shared["photo"], shared["report"]
    member, stranger, anonymous = _client(shared["ben"]), _client(shared["cy"]), Client()
    anonymous.get("/streaming-demo")  # a visitor with an id of their own

    page = member.get(f"/streaming-demo/c/{shared['conversation'].pk}")
    assert page.status_code == 200
    _assert_shows(page.content.decode(), photo, report)
    for url in (photo["url"], photo["thumbnail_url"], report["url"]):
        answer = member.get(url)
        assert answer.status_code == 200, url
        assert answer["Content-Disposition"].startswith("attachment;")
        assert stranger.get(url).status_code == 404
        assert anonymous.get(url).status_code == 404

    # Once Ben is removed, or the conversation deleted, the files close to him as well.
    ConversationMember.objects.filter(user=shared["ben"]).delete()
    assert member.get(report["url"]).status_code == 404


def test_an_upload_not_yet_sent_stays_its_owners_alone(shared, files):
    draft = _upload_sync(shared["owner"], "draft.txt", b"not sent yet\n")

    assert shared["owner"].get(draft["url"]).status_code == 200
    assert _client(shared["ben"]).get(draft["url"]).status_code == 404


def test_a_deleted_conversations_files_close_to_its_members(shared):
    from django.utils import timezone

    conversation = shared["conversation"]
    conversation.deleted_at = timezone.now()
    conversation.save(update_fields=["deleted_at"])

    assert _client(shared["ben"]).get(shared["report"]["url"]).status_code == 404


def test_staff_see_thumbnails_and_download_links_in_the_transcript(shared):
    staff = User.objects.create_superuser("root", "root@example.com", "x")
    admin = _client(staff)

    page = admin.get(f"/admin/chat/conversation/{shared['conversation'].pk}/change/")

    assert page.status_code == 200
    _assert_shows(page.content.decode(), shared["photo"], shared["report"])
    assert admin.get(shared["photo"]["url"]).status_code == 200
    assert admin.get(shared["report"]["url"]).status_code == 200
    # Staff without the right to read transcripts are strangers to the files.
    clerk = User.objects.create_user("clerk", is_staff=True)
    assert _client(clerk).get(shared["report"]["url"]).status_code == 404


# --- Snapshot links ------------------------------------------------------------------------------


def test_a_snapshot_serves_the_files_it_holds_while_its_link_works(shared, files):
    ana = Visitor(user=shared["ana"], visitor_id="")
    share = snapshots.share_publish(visitor=ana, conversation_id=str(shared["conversation"].pk))
    photo_id, report_id = shared["photo"]["id"], shared["report"]["id"]
    base = f"/s/{share.token}/files"
    # A file sent after publishing is not in the snapshot.
    later = _upload_sync(shared["owner"], "later.txt", b"after the snapshot\n")
    services.reply_start(
        visitor=ana,
        conversation_id=str(shared["conversation"].pk),
        text="One more",
        model_choice="demo:demo",
        attachment_ids=[later["id"]],
    )
    reader = Client()

    page = reader.get(f"/s/{share.token}")
    assert page.status_code == 200
    shown = _files_of(page.content.decode())
    assert f'src="{base}/{photo_id}/thumbnail"' in shown
    assert f'data-full="{base}/{photo_id}"' in shown
    assert f'href="{base}/{report_id}" download' in shown and "all 1 page" in shown
    assert "/streaming-demo/attachments/" not in shown  # the owner's URLs are not published

    for url in (f"{base}/{photo_id}", f"{base}/{photo_id}/thumbnail", f"{base}/{report_id}"):
        answer = reader.get(url)
        assert answer.status_code == 200, url
        assert answer["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert answer["Content-Disposition"].startswith("attachment;")
    assert reader.get(f"{base}/{later['id']}").status_code == 404
    assert reader.get(f"{base}/{report_id}/thumbnail").status_code == 404  # documents have none

    snapshots.share_revoke(user=shared["ana"], share_id=share.pk)
    assert reader.get(f"{base}/{report_id}").status_code == 404
    assert reader.get(f"{base}/{photo_id}/thumbnail").status_code == 404


def test_continuing_a_snapshot_copies_its_files_for_the_new_owner(shared):
    ana = Visitor(user=shared["ana"], visitor_id="")
    share = snapshots.share_publish(visitor=ana, conversation_id=str(shared["conversation"].pk))
    cy = shared["cy"]

    answer = _client(cy).post(f"/s/{share.token}")

    assert answer.status_code == 302
    question = Message.objects.get(conversation__user=cy, role="user")
    assert question.has_attachments
    copies = list(Attachment.objects.filter(message=question).order_by("created_at"))
    assert [(a.name, a.user_id) for a in copies] == [("cat.png", cy.pk), ("report.pdf", cy.pk)]
    page = _client(cy).get(answer["Location"]).content.decode()
    assert f"/streaming-demo/attachments/{copies[0].pk}/thumbnail" in page
    assert _client(cy).get(f"/streaming-demo/attachments/{copies[1].pk}").status_code == 200


def test_a_room_member_gets_the_senders_files_in_the_live_fragment(shared):
    from chat.web.rooms import reply_started_fragment

    conversation = shared["conversation"]
    question = Message.objects.get(conversation=conversation, role="user")
    reply = Message.objects.get(conversation=conversation, role="assistant")

    html = reply_started_fragment(
        Visitor(user=shared["ben"], visitor_id=""),
        {"assistant_id": reply.pk, "user_message_id": question.pk},
    )

    _assert_shows(html, shared["photo"], shared["report"])
