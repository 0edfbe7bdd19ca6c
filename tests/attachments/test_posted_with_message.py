"""The composer without JavaScript: files posted with the message (a multipart form, field
`file`) go through the upload's own code, then with the send; a refused one re-renders the page
with the reason after the file's name, and nothing is sent."""

from __future__ import annotations

import asyncio

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat.models import Attachment, Message
from chat.replies.registry import live_jobs

pytestmark = pytest.mark.django_db(transaction=True)

SEND = "/streaming-demo/messages"
MODEL = "openai:gpt-4.1-mini"


async def post(client, text: str, files: list[SimpleUploadedFile], **fields):
    response = await client.post(
        SEND, {"action": "send", "message": text, "model": MODEL, "file": files, **fields}
    )
    await asyncio.gather(*live_jobs())
    return response


async def test_files_posted_with_the_message_reach_the_model(
    async_client, apage_visitor, files, openai_upstream
):
    await apage_visitor(async_client)
    openai_upstream.script(text="Seen.")
    photo = SimpleUploadedFile("beach.png", files.small_image("PNG", (80, 60)))
    notes = SimpleUploadedFile("notes.txt", b"Buy milk.\n")

    response = await post(async_client, "Look", [photo, notes])

    assert response.status_code == 302
    (received,) = openai_upstream.requests
    assert received.images() == [("image_url", "PNG", (80, 60))]
    assert [name for name, _, _ in received.documents()] == ["notes.txt"]
    question = await Message.objects.aget(role="user")
    assert await Attachment.objects.filter(message=question).acount() == 2


async def test_an_empty_file_input_posts_nothing_and_the_message_goes(
    async_client, apage_visitor, openai_upstream
):
    await apage_visitor(async_client)
    # A browser posts an empty part, with an empty file name, for a file input left alone.
    fields = {"action": "send", "message": "Just text", "model": MODEL}
    parts = [
        f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        '--B\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
        "Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n"
    )
    response = await async_client.post(
        SEND, data="".join(parts).encode(), content_type="multipart/form-data; boundary=B"
    )
    await asyncio.gather(*live_jobs())
    assert response.status_code == 302
    assert len(openai_upstream.requests) == 1
    assert await Attachment.objects.acount() == 0


async def test_a_refused_file_re_renders_the_page_naming_it_and_sends_nothing(
    async_client, apage_visitor, openai_upstream, settings
):
    await apage_visitor(async_client)
    hostile = SimpleUploadedFile("tool.png", b"MZ\x90\x00" + b"\x00" * 400)

    response = await post(async_client, "And this?", [hostile])

    assert response.status_code == 400
    page = response.content.decode()
    assert "tool.png: " in page and "And this?</textarea>" in page
    assert openai_upstream.requests == []
    assert await Message.objects.acount() == 0

    settings.CHAT_MAX_UPLOAD_BYTES = 10
    big = SimpleUploadedFile("big.txt", b"x" * 11)
    too_big = await post(async_client, "Big", [big])
    assert too_big.status_code == 413
    assert "big.txt: This file is 11 bytes: more than the 10 bytes allowed." in (
        too_big.content.decode()
    )

    settings.CHAT_MAX_FILES_PER_MESSAGE = 1
    two = [SimpleUploadedFile(f"{n}.txt", b"hi\n") for n in range(2)]
    too_many = await post(async_client, "Two", two)
    assert too_many.status_code == 400
    assert "at most 1 file; this one has 2" in too_many.content.decode()
    assert openai_upstream.requests == []
