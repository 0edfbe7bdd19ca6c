"""Feedback on replies: the owner rates a finished reply 👍 / 👎 with an optional comment, may
change it, and nobody else can see or touch it; staff find it in the list and the transcript."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404

from chat.conversations.feedback import message_feedback_set
from chat.conversations.reads import Visitor
from chat.models import Conversation, Message
from chat.replies import start as services

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
FINISHED = {"status": "complete", "ended_reason": "completed", "content": "An answer."}


def finished_reply(visitor: Visitor, text: str = "Question?", **fields) -> Message:
    started = services.reply_start(
        visitor=visitor, conversation_id=None, text=text, model_choice="demo:demo"
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(**{**FINISHED, **fields})
    return Message.objects.get(pk=started.assistant_message.pk)


def url(message: Message) -> str:
    return f"/streaming-demo/replies/{message.pk}/feedback"


def test_owner_rates_a_reply_and_changes_the_rating(client, page_visitor):
    reply = finished_reply(page_visitor(client))

    response = client.post(url(reply), {"rating": "down"}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="feedback-down" aria-pressed="true"' in html
    assert "Add a comment" in html and " open>" in html  # the comment box opens after a rating

    response = client.post(
        url(reply), {"rating": "down", "comment": "  Wrong year.  "}, headers=HTMX
    )
    assert response.status_code == 200
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == (Message.Feedback.DOWN, "Wrong year.")
    conversation = Conversation.objects.get(pk=reply.conversation_id)
    assert (conversation.feedback_up, conversation.feedback_down) == (0, 1)
    assert conversation.feedback_comments == 1

    # Changing their mind keeps the comment; taking the rating back removes both.
    client.post(url(reply), {"rating": "up", "comment": "Wrong year."}, headers=HTMX)
    reply.refresh_from_db()
    conversation.refresh_from_db()
    assert reply.feedback == Message.Feedback.UP and reply.feedback_comment == "Wrong year."
    assert (conversation.feedback_up, conversation.feedback_down) == (1, 0)

    client.post(url(reply), {"rating": "none"}, headers=HTMX)
    reply.refresh_from_db()
    conversation.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment, reply.feedback_at) == (None, "", None)
    assert (conversation.feedback_up, conversation.feedback_comments) == (0, 0)


def test_feedback_without_javascript_returns_to_the_reply(client, page_visitor):
    reply = finished_reply(page_visitor(client))

    response = client.post(url(reply), {"rating": "up"})

    assert response.status_code == 302
    assert response["Location"] == (f"/streaming-demo/c/{reply.conversation_id}#msg-{reply.pk}")
    page = client.get(response["Location"]).content.decode()
    assert 'class="feedback-up" aria-pressed="true"' in page
    assert f'action="/streaming-demo/replies/{reply.pk}/feedback"' in page


def test_another_visitors_reply_is_a_404_and_stays_unrated(client, other_visitor, page_visitor):
    theirs = finished_reply(other_visitor)
    page_visitor(client)

    assert client.post(url(theirs), {"rating": "down"}, headers=HTMX).status_code == 404
    assert client.post(url(theirs), {"rating": "down"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.feedback is None
    with pytest.raises(Http404):
        message_feedback_set(
            visitor=Visitor(user=AnonymousUser(), visitor_id="someone-else"),
            message_id=theirs.pk,
            rating="up",
        )


def test_a_signed_in_users_reply_is_theirs_alone(client, visitor):
    owner = User.objects.create_user("owner", password="pw-owner-123")
    reply = finished_reply(Visitor(user=owner, visitor_id=""))
    User.objects.create_user("other", password="pw-other-123")

    client.login(username="other", password="pw-other-123")
    assert client.post(url(reply), {"rating": "up"}).status_code == 404
    client.login(username="owner", password="pw-owner-123")
    assert client.post(url(reply), {"rating": "up"}).status_code == 302
    reply.refresh_from_db()
    assert reply.feedback == Message.Feedback.UP


def test_the_users_message_and_an_unknown_reply_are_404s(client, page_visitor):
    reply = finished_reply(page_visitor(client))
    question = Message.objects.get(conversation_id=reply.conversation_id, role="user")

    assert client.post(url(question), {"rating": "up"}).status_code == 404
    assert (
        client.post("/streaming-demo/replies/999999/feedback", {"rating": "up"}).status_code == 404
    )
    assert client.get(url(reply)).status_code == 405


@pytest.mark.parametrize(
    ("fields", "form", "error"),
    [
        ({}, {"rating": "meh"}, "Rate the reply good or bad."),
        ({}, {"rating": "up", "comment": "x" * 2001}, "the limit is 2,000"),
        ({"status": "streaming", "ended_reason": ""}, {"rating": "up"}, "still being written"),
        ({"superseded": True}, {"rating": "up"}, "replaced by a newer one"),
        (
            {"status": "error", "ended_reason": "provider_error", "content": ""},
            {"rating": "down"},
            "This reply failed, so there is nothing to rate",
        ),
    ],
)
def test_bad_feedback_gets_a_clear_error(client, fields, form, error, page_visitor):
    reply = finished_reply(page_visitor(client), **fields)

    response = client.post(url(reply), form, headers=HTMX)
    assert response.status_code == 400
    assert error in response.content.decode()
    # Without JavaScript: the page again, with the reason.
    response = client.post(url(reply), form)
    assert response.status_code == 400
    assert error in response.content.decode()
    reply.refresh_from_db()
    assert reply.feedback is None


@pytest.fixture
def staff_client(client):
    User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client.login(username="boss", password="pw-boss-123")
    return client


def test_staff_filter_conversations_by_feedback_and_read_it(staff_client, visitor, other_visitor):
    liked = finished_reply(visitor, "Liked one")
    disliked = finished_reply(other_visitor, "Disliked one")
    commented = finished_reply(visitor, "Commented one")
    finished_reply(visitor, "Unrated one")
    message_feedback_set(visitor=visitor, message_id=liked.pk, rating="up")
    message_feedback_set(visitor=other_visitor, message_id=disliked.pk, rating="down")
    message_feedback_set(
        visitor=visitor, message_id=commented.pk, rating="down", comment="It <b>made up</b> a law."
    )

    def titles(query: str) -> set[str]:
        response = staff_client.get(f"/admin/chat/conversation/?{query}")
        assert response.status_code == 200
        return {str(c) for c in response.context["cl"].result_list}

    assert titles("feedback=any") == {"Liked one", "Disliked one", "Commented one"}
    assert titles("feedback=up") == {"Liked one"}
    assert titles("feedback=down") == {"Disliked one", "Commented one"}
    assert titles("feedback=comment") == {"Commented one"}
    assert titles("feedback=bogus") == set()

    page = staff_client.get(f"/admin/chat/conversation/{commented.conversation_id}/change/")
    html = page.content.decode()
    assert 'data-feedback="down"' in html and "Rated bad by the owner" in html
    assert "It &lt;b&gt;made up&lt;/b&gt; a law." in html


def test_a_failed_reply_shows_no_rating_buttons(client, page_visitor):
    visitor = page_visitor(client)
    failed = finished_reply(visitor, status="error", ended_reason="provider_error", content="")
    fine = finished_reply(visitor, text="Another question?")

    failed_html = client.get(f"/streaming-demo/c/{failed.conversation_id}").content.decode()
    fine_html = client.get(f"/streaming-demo/c/{fine.conversation_id}").content.decode()

    assert f'id="feedback-{failed.pk}"' not in failed_html
    assert "Retry this reply" in failed_html
    assert f'id="feedback-{fine.pk}"' in fine_html
