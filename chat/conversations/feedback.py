"""Feedback on replies: the owner's 👍 (good) or 👎 (bad) with an optional comment, which they
may change.

The conversation keeps counts of its rated replies (`feedback_up`, `feedback_down`,
`feedback_comments`), so staff filter the conversation list by feedback without reading the
message table; the analytics page reads the ratings of rolled-up days from their roll-up, which a
change marks to be counted again (`chat.analytics.rollup_ratings`), and today's from the replies.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from chat.analytics.rollup_ratings import rollup_ratings_invalidate
from chat.conversations.reads import Visitor, message_get, own_turn
from chat.models import Conversation, Message

COMMENT_MAX_CHARS = 2000
RATINGS = {"up": Message.Feedback.UP, "down": Message.Feedback.DOWN, "none": None}


class FeedbackError(Exception):
    """Input the user can fix; the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def message_feedback_set(
    *, visitor: Visitor, message_id: int | str, rating: str, comment: str | None = None
) -> Message:
    """Rate a finished reply of the visitor's (`up`, `down`, or `none` to take the rating back)
    and set its comment (None keeps the one it has). Another visitor's reply is a 404."""
    message = message_get(visitor, message_id)
    if not own_turn(visitor, message):
        raise FeedbackError(
            "Only the person who asked, or the conversation's owner, rates a reply."
        )
    if rating not in RATINGS:
        raise FeedbackError("Rate the reply good or bad.")
    if comment is not None:
        comment = comment.strip()
        if len(comment) > COMMENT_MAX_CHARS:
            raise FeedbackError(
                f"The comment is {len(comment):,} characters; the limit is {COMMENT_MAX_CHARS:,}."
            )
    if message.is_streaming:
        raise FeedbackError("This reply is still being written; rate it once it has finished.")
    if message.superseded:
        raise FeedbackError("This reply was replaced by a newer one.")
    value = RATINGS[rating]
    if message.failed and value is not None:
        # A failed reply has no answer to judge: its error is the server's or the provider's.
        raise FeedbackError(
            "This reply failed, so there is nothing to rate: retry it or delete the turn."
        )
    if value is None:
        comment = ""  # a comment belongs to a rating
    elif comment is None:
        comment = message.feedback_comment
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(
            feedback=value,
            feedback_comment=comment,
            feedback_at=timezone.now() if value is not None else None,
        )
        counts = Message.objects.filter(conversation_id=message.conversation_id).aggregate(
            up=Count("id", filter=Q(feedback=Message.Feedback.UP)),
            down=Count("id", filter=Q(feedback=Message.Feedback.DOWN)),
            comments=Count("id", filter=Q(feedback__isnull=False) & ~Q(feedback_comment="")),
        )
        Conversation.objects.filter(pk=message.conversation_id).update(
            feedback_up=counts["up"],
            feedback_down=counts["down"],
            feedback_comments=counts["comments"],
        )
        rollup_ratings_invalidate(message.day)
    message.feedback, message.feedback_comment = value, comment
    return message
