"""Who may see what: the single-row reads agree with the visitor's conversations."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.conversations.reads import (
    Visitor,
    chat_message_get,
    conversation_get,
    conversations_for,
    message_get,
)
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def _conversation(owner: Visitor, **fields) -> Conversation:
    return Conversation.objects.create(
        user=owner.user if owner.is_authenticated else None,
        visitor_id="" if owner.is_authenticated else owner.visitor_id,
        **fields,
    )


def _reply(conversation: Conversation, **fields) -> Message:
    return Message.objects.create(
        conversation=conversation,
        role=fields.pop("role", Message.Role.ASSISTANT),
        content="Hi",
        status=Message.Status.COMPLETE,
        **fields,
    )


def test_single_row_reads_agree_with_the_visitors_conversations():
    ada = Visitor(user=User.objects.create_user("ada"), visitor_id="")
    bob = Visitor(user=User.objects.create_user("bob"), visitor_id="")
    anon = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    other_anon = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    no_session = Visitor(user=AnonymousUser(), visitor_id="")
    visitors = [ada, bob, anon, other_anon, no_session]
    conversations = [
        _conversation(ada),
        _conversation(anon),
        _conversation(ada, deleted_at=timezone.now()),
        # An anonymous visitor's conversation that moved to an account on sign-in.
        Conversation.objects.create(user=bob.user, visitor_id=anon.visitor_id),
    ]
    messages = []
    for conversation in conversations:
        messages += [
            _reply(conversation),
            _reply(conversation, role=Message.Role.USER),
            _reply(conversation, deleted_at=timezone.now()),
            _reply(conversation, kind=Message.Kind.TITLE),
        ]

    for visitor in visitors:
        allowed = set(conversations_for(visitor).values_list("pk", flat=True))
        for conversation in conversations:
            try:
                seen = conversation_get(visitor, str(conversation.pk)) is not None
            except Http404:
                seen = False
            assert seen == (conversation.pk in allowed)
        for message in messages:
            expected = (
                message.conversation_id in allowed
                and message.deleted_at is None
                and message.kind == Message.Kind.CHAT
            )
            for getter, role in ((chat_message_get, None), (message_get, "assistant")):
                try:
                    seen = getter(visitor, message.pk) is not None
                except Http404:
                    seen = False
                assert seen == (expected and role in (None, message.role)), (visitor, message)


@pytest.mark.parametrize("message_id", ["x", None, -1, 0, 2**63, 10**30, "1e3"])
def test_ids_that_cannot_be_ours_are_not_found(message_id):
    visitor = Visitor(user=AnonymousUser(), visitor_id=uuid.uuid4().hex)
    with pytest.raises(Http404):
        chat_message_get(visitor, message_id)


def test_a_watch_check_is_one_query(visitor):
    reply = _reply(_conversation(visitor))
    with CaptureQueriesContext(connection) as queries:
        assert message_get(visitor, reply.pk) == reply
    assert len(queries) == 1
