"""Who may see and do what in a shared conversation: the owner, its members, everyone else."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404

from chat.conversations import sharing, writes
from chat.conversations.errors import NotAllowed
from chat.conversations.reads import (
    Visitor,
    chat_message_get,
    conversation_get,
    conversation_members,
    conversations_for,
    is_owner,
    is_shared,
    sidebar_page,
    visible_to,
)
from chat.conversations.signals import member_removed, presence_switched, sharing_stopped
from chat.models import Conversation, ConversationMember, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    def person(name: str) -> Visitor:
        return Visitor(user=User.objects.create_user(name), visitor_id="")

    return person("ana"), person("ben"), person("cy")


def _room(owner: Visitor, *members: Visitor) -> Conversation:
    conversation = Conversation.objects.create(user=owner.user, title="Room", model="demo")
    for member in members:
        ConversationMember.objects.create(conversation=conversation, user=member.user)
    return conversation


def test_a_member_sees_the_conversation_and_an_outsider_does_not(people):
    ana, ben, cy = people
    room = _room(ana, ben)
    message = Message.objects.create(conversation=room, role="user", content="hi")

    assert visible_to(ana, room) and visible_to(ben, room)
    assert not visible_to(cy, room)
    assert conversation_get(ben, room.pk) == room
    assert chat_message_get(ben, message.pk) == message
    with pytest.raises(Http404):
        conversation_get(cy, room.pk)
    with pytest.raises(Http404):
        chat_message_get(cy, message.pk)
    anonymous = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    assert not visible_to(anonymous, room)


def test_members_find_shared_conversations_in_their_list_once(people):
    ana, ben, cy = people
    room = _room(ana, ben, cy)
    own = Conversation.objects.create(user=ben.user, title="Mine", model="demo")

    assert list(conversations_for(ana)) == [room]  # not once per member
    assert set(conversations_for(ben)) == {room, own}
    page = sidebar_page(ben, limit=10)
    shared = {item.conversation.pk: item.conversation.shared for item in page.items}
    assert shared == {room.pk: True, own.pk: False}


def test_owner_first_then_members_in_joining_order(people):
    ana, ben, cy = people
    room = _room(ana, cy, ben)

    assert conversation_members(room) == [ana.user, cy.user, ben.user]
    assert is_owner(ana, room) and not is_owner(cy, room)
    assert is_shared(room) and not is_shared(_room(ben))


def test_a_removed_member_gets_404_at_once_and_the_signal_is_sent(
    people, django_capture_on_commit_callbacks
):
    ana, ben, _ = people
    room = _room(ana, ben)
    assert conversation_get(ben, room.pk) == room
    sent: list[dict] = []
    member_removed.connect(receiver := lambda **kw: sent.append(kw), weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            sharing.member_remove(visitor=ana, conversation_id=room.pk, user_id=ben.user.pk)
    finally:
        member_removed.disconnect(receiver)

    with pytest.raises(Http404):
        conversation_get(ben, room.pk)
    assert room not in conversations_for(ben)
    assert sent[0]["conversation_id"] == room.pk and sent[0]["user_id"] == ben.user.pk


def test_stopping_sharing_removes_everyone_and_turns_the_invite_off(
    people, django_capture_on_commit_callbacks
):
    ana, ben, cy = people
    room = _room(ana, ben, cy)
    invite = sharing.invite_create(visitor=ana, conversation_id=room.pk)
    sent: list[dict] = []
    sharing_stopped.connect(receiver := lambda **kw: sent.append(kw), weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            sharing.sharing_stop(visitor=ana, conversation_id=room.pk)
    finally:
        sharing_stopped.disconnect(receiver)

    assert not is_shared(room)
    assert sorted(sent[0]["user_ids"]) == sorted([ben.user.pk, cy.user.pk])
    with pytest.raises(Http404):
        sharing.invite_join(visitor=cy, token=invite.token)


def test_only_the_owner_renames_deletes_and_shares(people):
    ana, ben, _ = people
    room = _room(ana, ben)

    with pytest.raises(NotAllowed):
        writes.conversation_rename(visitor=ben, conversation_id=room.pk, title="Mine now")
    with pytest.raises(NotAllowed):
        sharing.invite_create(visitor=ben, conversation_id=room.pk)
    with pytest.raises(NotAllowed):
        sharing.member_remove(visitor=ben, conversation_id=room.pk, user_id=ana.user.pk)
    writes.conversation_rename(visitor=ana, conversation_id=room.pk, title="Ours")
    assert Conversation.objects.get(pk=room.pk).title == "Ours"


def test_an_anonymous_owner_cannot_share():
    visitor = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    conversation = Conversation.objects.create(visitor_id=visitor.visitor_id, model="demo")

    with pytest.raises(NotAllowed, match="needs an account"):
        sharing.invite_create(visitor=visitor, conversation_id=conversation.pk)


def test_joining_is_idempotent_and_the_owner_joins_nothing(people):
    ana, ben, _ = people
    room = _room(ana)
    invite = sharing.invite_create(visitor=ana, conversation_id=room.pk)

    assert sharing.invite_join(visitor=ben, token=invite.token) == room
    assert sharing.invite_join(visitor=ben, token=invite.token) == room
    assert sharing.invite_join(visitor=ana, token=invite.token) == room
    assert list(ConversationMember.objects.values_list("user__username", flat=True)) == ["ben"]


def test_a_new_link_retires_the_old_one(people):
    ana, ben, _ = people
    room = _room(ana)
    old = sharing.invite_create(visitor=ana, conversation_id=room.pk)
    new = sharing.invite_create(visitor=ana, conversation_id=room.pk)

    with pytest.raises(Http404):
        sharing.invite_join(visitor=ben, token=old.token)
    assert sharing.invite_join(visitor=ben, token=new.token) == room


def test_only_the_owner_switches_presence_and_the_room_hears_of_each_change_once(
    people, django_capture_on_commit_callbacks
):
    ana, ben, cy = people
    room = _room(ana, ben)
    sent: list[dict] = []
    presence_switched.connect(receiver := lambda **kw: sent.append(kw), weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            sharing.presence_set(visitor=ana, conversation_id=room.pk, enabled=False)
            # Again (a second tab, a double submit): nothing changes, nobody is told twice.
            sharing.presence_set(visitor=ana, conversation_id=room.pk, enabled=False)
        assert Conversation.objects.get(pk=room.pk).presence_enabled is False
        assert [(s["conversation_id"], s["enabled"]) for s in sent] == [(room.pk, False)]

        with pytest.raises(NotAllowed):
            sharing.presence_set(visitor=ben, conversation_id=room.pk, enabled=True)
        with pytest.raises(Http404):
            sharing.presence_set(visitor=cy, conversation_id=room.pk, enabled=True)
        assert Conversation.objects.get(pk=room.pk).presence_enabled is False

        with django_capture_on_commit_callbacks(execute=True):
            sharing.presence_set(visitor=ana, conversation_id=room.pk, enabled=True)
        assert Conversation.objects.get(pk=room.pk).presence_enabled is True
        assert [s["enabled"] for s in sent] == [False, True]
    finally:
        presence_switched.disconnect(receiver)


def test_an_anonymous_owner_has_no_presence_switch():
    visitor = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    conversation = Conversation.objects.create(visitor_id=visitor.visitor_id, model="demo")

    with pytest.raises(NotAllowed, match="needs an account"):
        sharing.presence_set(visitor=visitor, conversation_id=conversation.pk, enabled=False)
    assert Conversation.objects.get(pk=conversation.pk).presence_enabled is True
