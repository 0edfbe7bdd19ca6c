"""Snapshot links: a read-only copy of the branch on screen at /s/<token>, for anyone (or, with
CHAT_PUBLIC_SHARES=false, the signed in), never indexed, revocable, expiring, continuable."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chat.conversations.reads import Visitor
from chat.models import Conversation, ConversationShare, Message
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published():
    """Ana's conversation published as a snapshot: (her client, the conversation, the path)."""
    ana = User.objects.create_user("ana")
    client = Client()
    client.force_login(ana)
    started = services.reply_start(
        visitor=Visitor(user=ana, visitor_id=""),
        conversation_id=None,
        text="Show <b>code</b>",
        model_choice="demo:demo",
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="Here:\n\n**bold** and `x`"
    )
    conversation = started.conversation

    def publish(**form) -> str:
        client.post(f"/streaming-demo/c/{conversation.pk}/sharing", {"action": "publish", **form})
        return "/s/" + ConversationShare.objects.get(revoked_at__isnull=True).token

    return client, conversation, publish


def test_anyone_reads_a_snapshot_rendered_and_never_indexed(published):
    _, _, publish = published
    path = publish()

    response = Client().get(path)

    html = response.content.decode()
    assert response.status_code == 200
    assert response["X-Robots-Tag"].startswith("noindex")
    assert '<meta name="robots" content="noindex' in html
    assert "Show &lt;b&gt;code&lt;/b&gt;" in html  # the question, escaped
    assert "<strong>bold</strong>" in html  # the reply, rendered server-side
    assert "Sign in to continue it" in html


def test_sharing_again_updates_the_same_link(published):
    _, conversation, publish = published
    path = publish()
    Message.objects.filter(conversation=conversation, role="assistant").update(content="Changed")

    assert publish() == path
    assert "Changed" in Client().get(path).content.decode()


def test_a_revoked_link_is_a_404(published):
    client, _, publish = published
    path = publish()
    share = ConversationShare.objects.get()
    listing = client.get("/settings/shares").content.decode()
    assert f"http://testserver{path}" in listing and "Revoke" in listing

    client.post("/settings/shares", {"share": share.pk})

    gone = Client().get(path)
    assert gone.status_code == 404 and gone["X-Robots-Tag"].startswith("noindex")
    assert "Revoked" in client.get("/settings/shares").content.decode()


def test_an_expired_link_is_a_404(published):
    _, _, publish = published
    path = publish(expiry="1d")
    assert Client().get(path).status_code == 200

    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        assert Client().get(path).status_code == 404


def test_someone_elses_share_cannot_be_revoked(published):
    _, _, publish = published
    publish()
    share = ConversationShare.objects.get()
    other = Client()
    other.force_login(User.objects.create_user("cy"))

    assert other.post("/settings/shares", {"share": share.pk}).status_code == 404
    assert ConversationShare.objects.get().revoked_at is None


def test_a_signed_in_viewer_continues_it_as_a_new_conversation_of_their_own(published):
    _, conversation, publish = published
    path = publish()
    ben = User.objects.create_user("ben")
    viewer = Client()
    viewer.force_login(ben)

    response = viewer.post(path)

    copy = Conversation.objects.get(user=ben)
    assert response.status_code == 302
    assert response["Location"] == f"/streaming-demo/c/{copy.pk}"
    assert copy.pk != conversation.pk
    texts = [(m.role, m.content) for m in copy.messages.order_by("id")]
    assert texts == [("user", "Show <b>code</b>"), ("assistant", "Here:\n\n**bold** and `x`")]
    assert "Here:" in viewer.get(response["Location"]).content.decode()
    assert Client().post(path).status_code == 302  # anonymous: to sign in, nothing copied
    assert Conversation.objects.count() == 2


def test_without_public_shares_a_viewer_signs_in_first(published, settings):
    _, _, publish = published
    path = publish()
    settings.CHAT_PUBLIC_SHARES = False

    response = Client().get(path)

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert re.search(r"next=.*s", response["Location"])
