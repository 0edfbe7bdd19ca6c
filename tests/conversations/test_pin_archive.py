"""Pinning and archiving a conversation: the owner's sidebar changes, nobody else's may."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404
from django.utils import timezone

from chat.conversations import writes
from chat.conversations.errors import NotAllowed
from chat.conversations.reads import (
    Visitor,
    conversation_get,
    conversations_archived,
    sidebar_page,
)
from chat.models import Conversation, ConversationMember

pytestmark = pytest.mark.django_db


def _person(name: str) -> Visitor:
    return Visitor(user=User.objects.create_user(name), visitor_id="")


def _chat(owner: Visitor, title: str, *, hours_ago: int = 0) -> Conversation:
    return Conversation.objects.create(
        user=owner.user if owner.is_authenticated else None,
        visitor_id="" if owner.is_authenticated else owner.visitor_id,
        title=title,
        model="demo",
        updated_at=timezone.now() - timedelta(hours=hours_ago),
    )


def _sidebar(visitor: Visitor) -> tuple[list[str], list[str]]:
    page = sidebar_page(visitor, limit=50)
    dated = [item.conversation.title for item in page.items if item.group != "pinned"]
    return [c.title for c in page.pinned], dated


def test_pinned_chats_lead_the_sidebar_in_their_own_group_until_unpinned():
    ana = _person("ana")
    _chat(ana, "Newest")
    old = _chat(ana, "Old but important", hours_ago=100)
    _chat(ana, "Middle", hours_ago=5)

    writes.conversation_pin(visitor=ana, conversation_id=old.pk, pinned=True)
    assert _sidebar(ana) == (["Old but important"], ["Newest", "Middle"])
    first_pin = Conversation.objects.get(pk=old.pk).pinned_at
    writes.conversation_pin(visitor=ana, conversation_id=old.pk, pinned=True)
    assert Conversation.objects.get(pk=old.pk).pinned_at == first_pin  # keeps its place

    writes.conversation_pin(visitor=ana, conversation_id=old.pk, pinned=False)
    assert _sidebar(ana) == ([], ["Newest", "Middle", "Old but important"])


def test_archived_chats_leave_the_sidebar_for_the_archived_list_and_still_open():
    anon = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    kept = _chat(anon, "Kept")
    done = _chat(anon, "Done with", hours_ago=1)
    writes.conversation_pin(visitor=anon, conversation_id=done.pk, pinned=True)

    writes.conversation_archive(visitor=anon, conversation_id=done.pk, archived=True)
    assert _sidebar(anon) == ([], ["Kept"])  # pinned or not, archived leaves the sidebar
    assert [c.title for c in conversations_archived(anon)] == ["Done with"]
    assert conversation_get(anon, done.pk) == done  # its link still works

    writes.conversation_archive(visitor=anon, conversation_id=done.pk, archived=False)
    assert _sidebar(anon) == (["Done with"], ["Kept"])
    assert conversations_archived(anon) == []
    assert kept.pk in {item.conversation.pk for item in sidebar_page(anon, limit=5).items}


def test_pinned_chats_come_first_in_the_pages_too():
    ana = _person("ana")
    for n in range(3):
        _chat(ana, f"Chat {n}", hours_ago=n)
    pinned = _chat(ana, "Pinned old", hours_ago=200)
    writes.conversation_pin(visitor=ana, conversation_id=pinned.pk, pinned=True)
    first = sidebar_page(ana, limit=2)
    assert [(i.conversation.title, i.group, i.starts_group) for i in first.items] == [
        ("Pinned old", "pinned", True),
        ("Chat 0", "today", True),
    ]
    rest = sidebar_page(ana, offset=2, limit=2, after_group=first.last_group)
    assert [i.conversation.title for i in rest.items] == ["Chat 1", "Chat 2"]


def test_only_the_owner_pins_or_archives_a_member_is_refused_anyone_else_gets_404():
    ana, ben, cy = _person("ana"), _person("ben"), _person("cy")
    room = _chat(ana, "Room")
    ConversationMember.objects.create(conversation=room, user=ben.user)
    anon = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)

    for service, flag in (
        (writes.conversation_pin, "pinned"),
        (writes.conversation_archive, "archived"),
    ):
        with pytest.raises(NotAllowed):
            service(visitor=ben, conversation_id=room.pk, **{flag: True})
        for stranger in (cy, anon):
            with pytest.raises(Http404):
                service(visitor=stranger, conversation_id=room.pk, **{flag: True})
        with pytest.raises(Http404):
            service(visitor=ana, conversation_id=uuid.uuid4(), **{flag: True})
    room.refresh_from_db()
    assert room.pinned_at is None and room.archived_at is None


def test_the_owners_pin_and_archive_do_not_move_the_chat_in_a_members_sidebar():
    ana, ben = _person("ana"), _person("ben")
    room = _chat(ana, "Room")
    ConversationMember.objects.create(conversation=room, user=ben.user)
    writes.conversation_pin(visitor=ana, conversation_id=room.pk, pinned=True)
    assert _sidebar(ben) == ([], ["Room"])
    assert [item.owned for item in sidebar_page(ben, limit=5).items] == [False]
    writes.conversation_archive(visitor=ana, conversation_id=room.pk, archived=True)
    assert _sidebar(ben) == ([], ["Room"])
    assert conversations_archived(ben) == []


def test_a_deleted_chat_is_neither_pinned_nor_archived_for_its_owner():
    ana = _person("ana")
    chat = _chat(ana, "Gone")
    writes.conversation_pin(visitor=ana, conversation_id=chat.pk, pinned=True)
    writes.conversation_archive(visitor=ana, conversation_id=chat.pk, archived=True)
    Conversation.objects.filter(pk=chat.pk).update(deleted_at=timezone.now())
    assert _sidebar(ana) == ([], []) and conversations_archived(ana) == []
    with pytest.raises(Http404):
        writes.conversation_archive(visitor=ana, conversation_id=chat.pk, archived=False)
