"""Sending attachments with a message: each provider gets the images in its SDK's own form and
the documents as delimited text blocks naming the file (the fake upstream decodes what it
received); ids are checked against the sender and images against the model, before anything is
sent."""

from __future__ import annotations

import asyncio

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient

from chat.models import Attachment, Conversation, Message
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

UPLOAD = "/streaming-demo/attachments"
SEND = "/streaming-demo/messages"


@pytest.fixture
def anthropic_upstream(settings, fake_upstream):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    return fake_upstream


async def upload(client, name: str, data: bytes) -> str:
    response = await client.post(UPLOAD, {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 201, response.content
    return response.json()["id"]


async def send(client, text: str, model: str, attachments: list[str]):
    """The composer's POST without JavaScript: it answers once the reply has ended."""
    response = await client.post(
        SEND, {"action": "send", "message": text, "model": model, "attachment": attachments}
    )
    await asyncio.gather(*live_jobs())
    return response


@pytest.mark.parametrize(
    ("upstream", "model", "how"),
    [
        ("openai_upstream", "openai:gpt-4.1-mini", "image_url"),
        ("anthropic_upstream", "anthropic:claude-haiku-4-5", "base64"),
    ],
)
async def test_a_photo_and_a_pdf_reach_the_model_in_its_sdks_form(
    request, async_client, apage_visitor, files, upstream, model, how
):
    fake = request.getfixturevalue(upstream)
    fake.script(text="A red corner.")
    await apage_visitor(async_client)
    photo = await upload(async_client, "IMG_0001.JPG", files.photo_with_gps())
    report = await upload(async_client, "report.pdf", files.pdf([["Revenue grew 12%."]]))

    response = await send(async_client, "What do these show?", model, [photo, report])

    assert response.status_code == 302
    (received,) = fake.requests
    assert received.images() == [(how, "JPEG", (1536, 2048))]
    assert received.documents() == [("report.pdf", "all 1 page", "Revenue grew 12%.")]
    assert "What do these show?" in str(received.body)
    question = await Message.objects.aget(role="user")
    assert question.has_attachments
    assert await Attachment.objects.filter(message=question).acount() == 2
    reply = await Message.objects.aget(role="assistant")
    assert reply.content == "A red corner." and reply.status == "complete"


async def test_the_files_go_again_with_every_later_turn(
    async_client, apage_visitor, files, openai_upstream
):
    await apage_visitor(async_client)
    notes = await upload(async_client, "notes.md", b"# Plan\n\nShip on Friday.\n")
    await send(async_client, "Read this", "openai:gpt-4.1-mini", [notes])
    conversation = await Conversation.objects.aget()

    await async_client.post(
        SEND,
        {
            "action": "send",
            "message": "And when?",
            "model": "openai:gpt-4.1-mini",
            "conversation": str(conversation.pk),
        },
    )
    await asyncio.gather(*live_jobs())

    first, second = openai_upstream.requests
    assert (
        second.documents()
        == first.documents()
        == [("notes.md", "all 3 lines", "# Plan\n\nShip on Friday.")]
    )


async def test_an_image_to_a_model_that_cannot_see_is_refused_before_anything_is_sent(
    async_client, apage_visitor, files, openai_upstream, settings
):
    settings.CHAT_VISION_MODELS = ["anthropic:*"]
    await apage_visitor(async_client)
    photo = await upload(async_client, "cat.png", files.small_image("PNG"))

    response = await send(async_client, "What is this?", "openai:gpt-4.1-mini", [photo])

    assert response.status_code == 400
    assert "gpt-4.1-mini · OpenAI cannot see images" in response.content.decode()
    assert openai_upstream.requests == []
    assert await Message.objects.acount() == 0
    assert await Attachment.objects.filter(message__isnull=True).acount() == 1


async def test_someone_elses_attachment_cannot_be_sent(
    async_client, apage_visitor, files, openai_upstream
):
    await apage_visitor(async_client)
    theirs = await upload(async_client, "secret.txt", b"their secret\n")
    stranger = AsyncClient()
    await apage_visitor(stranger)

    response = await send(stranger, "Read it", "openai:gpt-4.1-mini", [theirs])

    assert response.status_code == 400
    assert "no longer available" in response.content.decode()
    assert openai_upstream.requests == [] and await Message.objects.acount() == 0
    assert (await Attachment.objects.aget()).message_id is None


async def test_a_sent_attachment_cannot_be_sent_again_nor_too_many_at_once(
    async_client, apage_visitor, files, openai_upstream, settings
):
    settings.CHAT_MAX_FILES_PER_MESSAGE = 2
    await apage_visitor(async_client)
    ids = [await upload(async_client, f"{n}.txt", f"file {n}\n".encode()) for n in range(3)]

    too_many = await send(async_client, "Three", "openai:gpt-4.1-mini", ids)
    assert too_many.status_code == 400
    assert "at most 2 files; this one has 3" in too_many.content.decode()

    assert (await send(async_client, "Two", "openai:gpt-4.1-mini", ids[:2])).status_code == 302
    again = await send(async_client, "Again", "openai:gpt-4.1-mini", ids[:1])
    assert again.status_code == 400 and "no longer available" in again.content.decode()
    assert len(openai_upstream.requests) == 1


async def test_files_alone_make_a_message_named_after_the_first(
    async_client, apage_visitor, files, openai_upstream
):
    await apage_visitor(async_client)
    notes = await upload(async_client, "minutes.txt", b"Decisions: none.\n")

    assert (await send(async_client, "", "openai:gpt-4.1-mini", [notes])).status_code == 302

    assert (await Conversation.objects.aget()).title == "minutes.txt"
    assert openai_upstream.requests[0].documents()[0][0] == "minutes.txt"


async def test_the_websocket_sends_attachments_too(
    async_client, apage_visitor, files, openai_upstream, chat_socket
):
    await apage_visitor(async_client)
    photo = await upload(async_client, "cat.webp", files.small_image("WEBP"))
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in async_client.cookies.items())
    socket = await chat_socket.connect(cookie)
    try:
        await chat_socket.send(
            socket,
            action="send",
            message="Look",
            model="openai:gpt-4.1-mini",
            conversation="",
            attachment=photo,  # hx-ws sends one value of a field as a string
        )
        await chat_socket.read_reply(socket, timeout=20)
    finally:
        await socket.disconnect()
    await asyncio.gather(*live_jobs())

    assert openai_upstream.requests[0].images() == [("image_url", "JPEG", (64, 48))]
    assert (await Attachment.objects.aget()).message_id is not None


async def test_regenerate_and_edit_send_the_same_files_again(
    async_client, apage_visitor, files, openai_upstream
):
    from chat.replies import start as services

    visitor = await apage_visitor(async_client)
    photo = await upload(async_client, "chart.png", files.small_image("PNG"))
    notes = await upload(async_client, "notes.txt", b"Q3 numbers\n")
    await send(async_client, "Explain", "openai:gpt-4.1-mini", [photo, notes])
    question = await Message.objects.aget(role="user")
    reply = await Message.objects.aget(role="assistant")

    await services.areply_regenerate(visitor=visitor, message_id=reply.pk)
    await asyncio.gather(*live_jobs())
    await services.amessage_edit(visitor=visitor, message_id=question.pk, text="Explain briefly")
    await asyncio.gather(*live_jobs())

    first, regenerated, edited = openai_upstream.requests
    for received in (first, regenerated, edited):
        assert received.images() == [("image_url", "PNG", (64, 48))]
        assert received.documents() == [("notes.txt", "all 1 line", "Q3 numbers")]
    assert "Explain briefly" in str(edited.body)
    # The edit's files are rows of its own, sharing the stored files.
    assert await Attachment.objects.acount() == 4
    assert len({a.storage_name async for a in Attachment.objects.all()}) == 2
