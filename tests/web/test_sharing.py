"""Sharing over HTTP and the socket: the owner's sharing page, joining by invite, removing
people, and an outsider refused everywhere (page, exports, feedback, SSE, socket)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chat.conversations.reads import Visitor
from chat.models import ConversationInvite, ConversationMember, Message
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _signed_in(name: str) -> tuple[Client, User]:
    user = User.objects.create_user(name, password="pw")
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def owner_room():
    """Ana's conversation with one finished turn, her client, and her reply's id."""
    client, ana = _signed_in("ana")
    started = services.reply_start(
        visitor=Visitor(user=ana, visitor_id=""),
        conversation_id=None,
        text="Plan a trip",
        model_choice="demo:demo",
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="Lisbon."
    )
    return client, started.conversation, started.assistant_message.pk


def _invite_path(client, conversation, **form) -> str:
    page = f"/streaming-demo/c/{conversation.pk}/sharing"
    client.post(page, {"action": "new_link", **form})
    html = client.get(page).content.decode()
    return re.search(r'value="http://testserver(/join/[^"]+)"', html).group(1)


def test_the_owners_menu_offers_share_and_the_page_gives_a_link(owner_room):
    client, conversation, _ = owner_room

    page = client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()
    assert f'href="/streaming-demo/c/{conversation.pk}/sharing">Share…</a>' in page
    join = _invite_path(client, conversation)

    assert ConversationInvite.objects.get().token in join


def test_joining_needs_sign_in_then_lands_in_the_chat_marked_shared(owner_room, settings):
    settings.CHAT_SIGNUP = True
    client, conversation, _ = owner_room
    join = _invite_path(client, conversation)

    anonymous = Client().get(join)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert anonymous["Location"].endswith("next=" + join)
    sign_in = Client().get(anonymous["Location"]).content.decode()
    assert "Create an account" in sign_in and f"/accounts/signup/?next={join}" in sign_in
    ben_client, ben = _signed_in("ben")
    joined = ben_client.get(join)
    assert (
        joined.status_code == 302 and joined["Location"] == f"/streaming-demo/c/{conversation.pk}"
    )
    assert ben_client.get(join).status_code == 302  # again: nothing changes
    assert ConversationMember.objects.filter(user=ben).count() == 1

    page = ben_client.get(joined["Location"]).content.decode()
    assert "Lisbon." in page
    assert '<span class="shared-mark" title="Shared with other people">shared</span>' in page
    assert "Share…" not in page  # only the owner shares
    assert client.get(join)["Location"] == f"/streaming-demo/c/{conversation.pk}"  # the owner


def test_turned_off_replaced_expired_and_unknown_links_are_the_same_404(owner_room):
    client, conversation, _ = owner_room
    sharing_page = f"/streaming-demo/c/{conversation.pk}/sharing"
    ben_client, _ = _signed_in("ben")

    first = _invite_path(client, conversation)
    second = _invite_path(client, conversation)  # "New link"
    assert ben_client.get(first).status_code == 404
    client.post(sharing_page, {"action": "turn_off"})
    assert ben_client.get(second).status_code == 404
    expiring = _invite_path(client, conversation, expiry="1d")
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        gone = ben_client.get(expiring)
    unknown = ben_client.get("/join/not-a-token")

    assert gone.status_code == unknown.status_code == 404
    assert "This invite link does not work" in unknown.content.decode()
    assert Client().get("/join/not-a-token").status_code == 404  # before any sign-in


def test_the_owner_removes_a_member_who_gets_404_at_once(owner_room):
    client, conversation, _ = owner_room
    ben_client, ben = _signed_in("ben")
    ben_client.get(_invite_path(client, conversation))
    html = client.get(f"/streaming-demo/c/{conversation.pk}/sharing").content.decode()
    assert 'aria-label="Remove ben"' in html

    client.post(
        f"/streaming-demo/c/{conversation.pk}/sharing", {"action": "remove", "user": ben.pk}
    )

    assert ben_client.get(f"/streaming-demo/c/{conversation.pk}").status_code == 404
    assert ben_client.get(f"/streaming-demo/c/{conversation.pk}/export.md").status_code == 404


def test_stop_sharing_removes_everyone_and_the_link(owner_room):
    client, conversation, _ = owner_room
    ben_client, _ = _signed_in("ben")
    join = _invite_path(client, conversation)
    ben_client.get(join)

    client.post(f"/streaming-demo/c/{conversation.pk}/sharing", {"action": "stop_sharing"})

    assert ben_client.get(f"/streaming-demo/c/{conversation.pk}").status_code == 404
    assert ben_client.get(join).status_code == 404


def test_a_member_may_not_rename_delete_or_share(owner_room):
    client, conversation, _ = owner_room
    ben_client, _ = _signed_in("ben")
    ben_client.get(_invite_path(client, conversation))

    assert (
        ben_client.post(
            f"/streaming-demo/c/{conversation.pk}/rename", {"title": "Mine"}
        ).status_code
        == 403
    )
    assert ben_client.post(f"/streaming-demo/c/{conversation.pk}/delete").status_code == 403
    assert ben_client.get(f"/streaming-demo/c/{conversation.pk}/sharing").status_code == 403
    assert client.get(f"/streaming-demo/c/{conversation.pk}").status_code == 200


def test_an_anonymous_owner_is_told_sharing_needs_an_account(client, page_visitor):
    visitor = page_visitor(client)
    started = services.reply_start(
        visitor=visitor, conversation_id=None, text="Hi", model_choice="demo:demo"
    )

    html = client.get(f"/streaming-demo/c/{started.conversation.pk}/sharing").content.decode()

    assert "Sharing needs an account" in html


def test_an_outsider_is_refused_the_page_exports_feedback_and_events(owner_room):
    client, conversation, reply_id = owner_room
    cy_client, _ = _signed_in("cy")
    base = f"/streaming-demo/c/{conversation.pk}"

    assert cy_client.get(base).status_code == 404
    assert cy_client.get(f"{base}/export.md").status_code == 404
    assert cy_client.get(f"{base}/export.json").status_code == 404
    assert cy_client.get(f"{base}/sharing").status_code == 404
    feedback = f"/streaming-demo/replies/{reply_id}/feedback"
    assert cy_client.post(feedback, {"rating": "up"}).status_code == 404
    assert cy_client.get(f"/streaming-demo/replies/{reply_id}/events").status_code == 404
    assert Message.objects.get(pk=reply_id).feedback is None


def test_exports_name_each_author_in_a_shared_conversation(owner_room):
    client, conversation, _ = owner_room
    ben_client, ben = _signed_in("ben")
    ben_client.get(_invite_path(client, conversation))
    services.reply_start(
        visitor=Visitor(user=ben, visitor_id=""),
        conversation_id=str(conversation.pk),
        text="And food?",
        model_choice="demo:demo",
    )

    markdown = ben_client.get(f"/streaming-demo/c/{conversation.pk}/export.md").content.decode()
    data = client.get(f"/streaming-demo/c/{conversation.pk}/export.json").json()

    assert "## ana\n\nPlan a trip" in markdown and "## ben\n\nAnd food?" in markdown
    assert [m["author"] for m in data["messages"] if m["role"] == "user"] == ["ana", "ben"]


async def test_an_outsider_cannot_watch_or_stop_a_reply_over_the_socket(
    owner_room, settings, chat_socket
):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 20
    client, conversation, _ = owner_room
    ana = await sync_to_async(lambda: conversation.user)()
    started = await sync_to_async(services.reply_start)(
        visitor=Visitor(user=ana, visitor_id=""),
        conversation_id=str(conversation.pk),
        text="Another",
        model_choice="demo:demo",
    )
    reply_id = started.assistant_message.pk
    cy_client, _ = await sync_to_async(_signed_in)("cy")
    cookie = (
        f"{settings.SESSION_COOKIE_NAME}={cy_client.cookies[settings.SESSION_COOKIE_NAME].value}"
    )
    socket = await chat_socket.connect(cookie)
    try:
        await chat_socket.send(socket, action="watch", message_id=reply_id, after=0)
        assert "Not found." in await socket.receive_from(5)
        await chat_socket.send(socket, action="stop", message_id=reply_id)
        assert "Not found." in await socket.receive_from(5)
        await chat_socket.send(socket, action="stop", conversation=str(conversation.pk))
        assert "Not found." in await socket.receive_from(5)
    finally:
        await socket.disconnect()
    message = await Message.objects.aget(pk=reply_id)
    assert message.status == Message.Status.STREAMING  # nobody stopped it


async def test_a_member_cannot_stop_another_members_reply_over_the_socket(
    owner_room, settings, chat_socket
):
    client, conversation, _ = owner_room
    ana = await sync_to_async(lambda: conversation.user)()
    started = await sync_to_async(services.reply_start)(
        visitor=Visitor(user=ana, visitor_id=""),
        conversation_id=str(conversation.pk),
        text="Another",
        model_choice="demo:demo",
    )
    ben_client, ben = await sync_to_async(_signed_in)("ben")
    await ConversationMember.objects.acreate(conversation=conversation, user=ben)
    cookie = (
        f"{settings.SESSION_COOKIE_NAME}={ben_client.cookies[settings.SESSION_COOKIE_NAME].value}"
    )
    socket = await chat_socket.connect(cookie)
    try:
        await chat_socket.send(socket, action="stop", message_id=started.assistant_message.pk)
        refused = await socket.receive_from(5)
    finally:
        await socket.disconnect()

    assert "conversation&#x27;s owner, can stop it" in refused


SWITCH = (
    '<input type="checkbox" role="switch" id="presence-switch-input" name="presence" value="on"'
    ' aria-describedby="presence-switch-status"'
)


def _presence(conversation) -> bool:
    conversation.refresh_from_db(fields=["presence_enabled"])
    return conversation.presence_enabled


def test_the_owner_turns_presence_off_and_on_without_javascript(owner_room):
    client, conversation, _ = owner_room
    page = f"/streaming-demo/c/{conversation.pk}/sharing"

    html = client.get(page).content.decode()
    assert f"{SWITCH} checked>" in html
    assert '<label for="presence-switch-input">Show who is here and who is typing</label>' in html
    # An unticked box sends nothing: the form says which switch it is, and Save sends it.
    off = client.post(page, {"action": "presence"})
    assert off.status_code == 302 and off["Location"] == page
    assert _presence(conversation) is False
    html = client.get(page).content.decode()
    assert f"{SWITCH}>" in html and "Off: nobody sees who is here" in html

    on = client.post(page, {"action": "presence", "presence": "on"})
    assert on.status_code == 302 and _presence(conversation) is True


def test_the_presence_switch_over_htmx_answers_with_its_new_status(owner_room):
    client, conversation, _ = owner_room
    page = f"/streaming-demo/c/{conversation.pk}/sharing"

    html = client.get(page).content.decode()
    assert 'hx-post="' + page + '" hx-trigger="change"' in html
    answer = client.post(page, {"action": "presence"}, headers={"HX-Request": "true"})

    assert answer.status_code == 200
    assert "Off: nobody sees who is here" in answer.content.decode()
    assert "<html" not in answer.content.decode()  # the status line only, not the page
    assert _presence(conversation) is False
    answer = client.post(
        page, {"action": "presence", "presence": "on"}, headers={"HX-Request": "true"}
    )
    assert "On: everyone here sees" in answer.content.decode() and _presence(conversation)


def test_only_the_owner_may_switch_presence_and_only_with_the_csrf_token(owner_room):
    client, conversation, _ = owner_room
    page = f"/streaming-demo/c/{conversation.pk}/sharing"
    ben_client, ben = _signed_in("ben")
    ben_client.get(_invite_path(client, conversation))
    cy_client, _ = _signed_in("cy")

    assert ben_client.post(page, {"action": "presence"}).status_code == 403  # a member
    assert cy_client.post(page, {"action": "presence"}).status_code == 404  # anyone else
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(conversation.user)
    assert forged.post(page, {"action": "presence"}).status_code == 403
    assert _presence(conversation) is True


def test_the_chat_page_says_when_presence_is_off(owner_room):
    client, conversation, _ = owner_room
    chat = f"/streaming-demo/c/{conversation.pk}"
    html = client.get(chat).content.decode()
    assert 'id="presence-state" class="presence-state" data-presence="on"></span>' in html

    client.post(f"{chat}/sharing", {"action": "presence"})

    html = client.get(chat).content.decode()
    assert 'data-presence="off">Presence is off</span>' in html


def test_with_presence_off_for_the_site_the_switch_says_so_and_is_greyed_out(owner_room, settings):
    settings.CHAT_PRESENCE = False
    client, conversation, _ = owner_room

    html = client.get(f"/streaming-demo/c/{conversation.pk}/sharing").content.decode()

    assert f"{SWITCH} checked disabled>" in html
    assert "Turned off for the whole site" in html and "data-without-js" not in html
    chat = client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()
    assert 'data-presence="off"></span>' in chat  # no "Presence is off" on every page


def test_a_redrawn_message_list_keeps_the_authors_in_a_shared_conversation(owner_room):
    # A version switch, an edit or a deleted turn redraws the list: it said nobody's name.
    client, conversation, reply_id = owner_room
    ben_client, _ = _signed_in("ben")
    ben_client.get(_invite_path(client, conversation))

    redrawn = client.post(
        f"/streaming-demo/messages/{reply_id}/show", HTTP_HX_REQUEST="true"
    ).content.decode()

    assert '<p class="msg-author">You</p>' in redrawn
