"""Reads: who may see what, and the data pages and transports render."""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, Exists, F, OuterRef, Q, When
from django.http import Http404
from django.utils import timezone

from chat.attachments.shown import files_prefetch
from chat.conversations.errors import NotAllowed
from chat.conversations.tree import Tree, Versions
from chat.models import Conversation, ConversationMember, Message


@dataclass(frozen=True, slots=True)
class Visitor:
    """Whoever is on the other end: a signed-in user, or an anonymous session's visitor id."""

    user: Any
    visitor_id: str
    # Where they connect from (past trusted proxies); limits count by it. Empty when unknown.
    client_ip: str = ""

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)

    @property
    def key(self) -> str:
        return f"user:{self.user.pk}" if self.is_authenticated else f"visitor:{self.visitor_id}"


def conversations_for(visitor: Visitor) -> Any:
    """The visitor's conversations, without the ones they deleted: their own and, signed in,
    those they are a member of."""
    if visitor.is_authenticated:
        # A subquery, not a join: a join would repeat an owned conversation once per member.
        member_of = ConversationMember.objects.filter(user_id=visitor.user.pk).values(
            "conversation_id"
        )
        return Conversation.objects.filter(Q(user_id=visitor.user.pk) | Q(pk__in=member_of)).live()
    return Conversation.objects.owned_by(user=visitor.user, visitor_id=visitor.visitor_id).live()


def is_owner(visitor: Visitor, conversation: Conversation) -> bool:
    """Whether the visitor owns `conversation` (a member does not)."""
    if conversation.deleted_at is not None:
        return False
    if visitor.is_authenticated:
        return bool(conversation.user_id == visitor.user.pk)
    return bool(
        visitor.visitor_id
        and conversation.user_id is None
        and conversation.visitor_id == visitor.visitor_id
    )


def deleted_own(visitor: Visitor, conversation_id: Any) -> Conversation | None:
    """The visitor's own conversation that they deleted (and that is kept: without
    CHAT_PURGE_DELETED), or None — for anyone else it does not exist, as before."""
    try:
        conversation = Conversation.objects.get(pk=uuid.UUID(str(conversation_id)))
    except (ValueError, Conversation.DoesNotExist):
        return None
    if conversation.deleted_at is None:
        return None
    if visitor.is_authenticated:
        owned = conversation.user_id == visitor.user.pk
    else:
        owned = bool(
            visitor.visitor_id
            and conversation.user_id is None
            and conversation.visitor_id == visitor.visitor_id
        )
    return conversation if owned else None


def is_member(visitor: Visitor, conversation: Conversation) -> bool:
    """Whether the visitor is a member of `conversation` (signed in, let in by an invite)."""
    return bool(
        visitor.is_authenticated
        and conversation.deleted_at is None
        and ConversationMember.objects.filter(
            conversation_id=conversation.pk, user_id=visitor.user.pk
        ).exists()
    )


def is_shared(conversation: Conversation) -> bool:
    """Whether anyone besides the owner is a member."""
    return ConversationMember.objects.filter(conversation_id=conversation.pk).exists()


def presence_enabled(conversation_id: Any) -> bool:
    """Whether the owner lets the conversation show who is here and who is typing (a deleted
    or unknown conversation: no). One row by its key: a room's heartbeat asks it."""
    enabled = (
        Conversation.objects.filter(pk=conversation_id, deleted_at__isnull=True)
        .values_list("presence_enabled", flat=True)
        .first()
    )
    return bool(enabled)


def conversation_members(conversation: Conversation) -> list[Any]:
    """Everyone in the conversation: the owner first, then members in the order they joined.
    An anonymous visitor's conversation has no members (sharing needs a signed-in owner)."""
    members = [
        membership.user
        for membership in ConversationMember.objects.filter(conversation_id=conversation.pk)
        .select_related("user")
        .order_by("added_at", "id")
    ]
    return [conversation.user, *members] if conversation.user is not None else members


def own_turn(visitor: Visitor, message: Message) -> bool:
    """Whether the visitor may act on this turn (stop, regenerate, edit, delete or rate it):
    the owner on any, a member on their own (a reply is the asker's)."""
    if is_owner(visitor, message.conversation):
        return True
    return bool(visitor.is_authenticated and message.author_id == visitor.user.pk)


def own_turn_required(visitor: Visitor, message: Message, *, doing: str) -> None:
    if not own_turn(visitor, message):
        raise NotAllowed(
            f"Only the person who sent this turn, or the conversation's owner, can {doing} it."
        )


def visible_to(visitor: Visitor, conversation: Conversation) -> bool:
    """Whether `conversation` is one of `conversations_for(visitor)`, checked on a loaded row:
    its owner's, or a member's (one more query, only for someone who is not the owner)."""
    if conversation.deleted_at is not None:
        return False
    if visitor.is_authenticated:
        return bool(conversation.user_id == visitor.user.pk) or is_member(visitor, conversation)
    return bool(
        visitor.visitor_id
        and conversation.user_id is None
        and conversation.visitor_id == visitor.visitor_id
    )


# Both reads below fetch the row by its key and check the visitor in Python rather than with a
# subquery: the same answer for a fraction of Django's query building (a watch or an SSE reader
# runs one per reply).


def conversation_get(visitor: Visitor, conversation_id: Any) -> Conversation:
    """The visitor's conversation, or Http404 — the same answer whether it does not exist or
    belongs to someone else, so ids cannot be probed."""
    try:
        conversation = Conversation.objects.get(pk=uuid.UUID(str(conversation_id)))
    except (ValueError, Conversation.DoesNotExist):
        raise Http404("No such conversation.") from None
    if not visible_to(visitor, conversation):
        raise Http404("No such conversation.")
    return conversation


def chat_message_get(visitor: Visitor, message_id: Any, *, role: str | None = None) -> Message:
    """One of the visitor's chat messages (not deleted, not a title job), or Http404."""
    message = room_message_get(message_id, role=role)
    if not visible_to(visitor, message.conversation):
        raise Http404("No such message.")
    return message


def room_message_get(message_id: Any, *, role: str | None = None) -> Message:
    """A chat message (not deleted, not a title job) read once for all the members of its
    conversation's room, or Http404: each of them is then checked with `visible_to`."""
    try:
        pk = int(message_id)
        if not 0 < pk < 2**63:  # beyond any database's integer key
            raise ValueError(pk)
        message = Message.objects.select_related("conversation").get(pk=pk)
    except (TypeError, ValueError, Message.DoesNotExist):
        raise Http404("No such message.") from None
    if (
        message.deleted_at is not None
        or message.kind != Message.Kind.CHAT
        or (role and message.role != role)
    ):
        raise Http404("No such message.")
    return message


def message_get(visitor: Visitor, message_id: Any) -> Message:
    """One of the visitor's replies."""
    return chat_message_get(visitor, message_id, role=Message.Role.ASSISTANT)


def user_message_get(visitor: Visitor, message_id: Any) -> Message:
    return chat_message_get(visitor, message_id, role=Message.Role.USER)


def conversation_tree(conversation: Conversation) -> Tree:
    return Tree.of(conversation)


def conversation_messages(conversation: Conversation) -> list[Message]:
    """The branch the owner sees, each message with its `versions` (‹ 1/2 ›)."""
    tree = conversation_tree(conversation)
    messages = tree.annotate(tree.branch(conversation.current_leaf_id))
    files_prefetch(messages)  # one query, only when a message on the branch has files
    return messages


def message_with_versions(message: Message) -> Message:
    """A message (e.g. a reply that just ended) with its `versions`, for its fragment."""
    siblings = list(
        Message.objects.chat()
        .filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
        .order_by("id")
        .values_list("pk", flat=True)
    )
    index = siblings.index(message.pk) if message.pk in siblings else 0
    message.versions = Versions(  # type: ignore[attr-defined]
        index=index + 1,
        count=max(1, len(siblings)),
        previous_id=siblings[index - 1] if index > 0 else None,
        next_id=siblings[index + 1] if index + 1 < len(siblings) else None,
    )
    return message


# --- The sidebar -------------------------------------------------------------------------------

GROUP_LABELS = {
    "pinned": "Pinned",
    "today": "Today",
    "yesterday": "Yesterday",
    "week": "Previous 7 days",
    "older": "Older",
}


def date_group(moment: datetime.datetime, *, today: datetime.date) -> str:
    """Which sidebar group a conversation's last activity falls in, by days in TIME_ZONE."""
    days = (today - timezone.localtime(moment).date()).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days <= 7:
        return "week"
    return "older"


@dataclass(frozen=True, slots=True)
class SidebarItem:
    conversation: Conversation
    group: str
    # The group's heading goes before this item (it starts a group).
    starts_group: bool
    # The visitor's own (its row has the ⋯ menu), not one shared with them.
    owned: bool = True

    @property
    def group_label(self) -> str:
        return GROUP_LABELS[self.group]


@dataclass(frozen=True, slots=True)
class SidebarPage:
    items: list[SidebarItem]
    next_offset: int | None  # where "Show more" continues, None when this is the end
    limit: int

    @property
    def shown_with_more(self) -> int:
        """How long the list is after "Show more" (the link without JavaScript)."""
        return (self.next_offset or 0) + self.limit

    @property
    def pinned(self) -> list[Conversation]:
        """The "Pinned" group, above the dated ones."""
        return [item.conversation for item in self.items if item.group == "pinned"]

    @property
    def last_group(self) -> str:
        return self.items[-1].group if self.items else ""


def sidebar_page(
    visitor: Visitor, *, offset: int = 0, limit: int, after_group: str = ""
) -> SidebarPage:
    """`limit` conversations from `offset`, most recent first, grouped Today / Yesterday /
    Previous 7 days / Older. `after_group` is the group the previous page ended in, so a page
    that continues it repeats no heading."""
    own = _own(visitor)
    # Pinned and archived apply to the owner's sidebar (a member sees the chat by its date).
    # One query: the pinned first (most recently pinned first), then by last activity.
    pinned_here = Q(pinned_at__isnull=False, archived_at__isnull=True) & own
    rows = list(
        _sidebar_rows(visitor)
        .filter(Q(archived_at__isnull=True) | ~own)
        .annotate(pin_order=Case(When(pinned_here, then=F("pinned_at")), default=None))
        .order_by(F("pin_order").desc(nulls_last=True), "-updated_at", "-id")[
            offset : offset + limit + 1
        ]
    )
    today = timezone.localdate()
    items: list[SidebarItem] = []
    previous = after_group
    for conversation in rows[:limit]:
        if conversation.pin_order is not None:
            group = "pinned"
        else:
            group = date_group(conversation.updated_at, today=today)
        owned = _owns(visitor, conversation)
        items.append(SidebarItem(conversation, group, starts_group=group != previous, owned=owned))
        previous = group
    return SidebarPage(items, offset + limit if len(rows) > limit else None, limit)


def _sidebar_rows(visitor: Visitor) -> Any:
    return (
        conversations_for(visitor)
        .only("id", "title", "updated_at", "user_id", "pinned_at")
        .annotate(shared=Exists(ConversationMember.objects.filter(conversation_id=OuterRef("pk"))))
    )


def _own(visitor: Visitor) -> Q:
    """Among `conversations_for(visitor)`, the visitor's own (an anonymous visitor has only
    their own)."""
    return Q(user_id=visitor.user.pk) if visitor.is_authenticated else Q(pk__isnull=False)


def _owns(visitor: Visitor, conversation: Conversation) -> bool:
    return not visitor.is_authenticated or conversation.user_id == visitor.user.pk


def conversations_archived(visitor: Visitor) -> list[Conversation]:
    """The visitor's own archived conversations, most recently archived first."""
    return list(
        conversations_for(visitor)
        .filter(_own(visitor), archived_at__isnull=False)
        .only("id", "title", "updated_at", "archived_at")
        .order_by("-archived_at", "-id")
    )


# --- Search ------------------------------------------------------------------------------------

SNIPPET_CHARS = 60
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation: Conversation
    # Around the first match in a message, split so the template escapes each part and marks
    # the match: (before, match, after). Empty when only the title matched.
    snippet: tuple[str, str, str] | None


def _snippet(text: str, query: str) -> tuple[str, str, str] | None:
    at = text.lower().find(query.lower())
    if at < 0:
        return None
    start = max(0, at - SNIPPET_CHARS)
    end = min(len(text), at + len(query) + SNIPPET_CHARS)
    # Runs of whitespace become one space — but the spaces next to the match stay, or
    # "with pytest" would read "with**pytest**".
    before = ("…" if start else "") + _WHITESPACE.sub(" ", text[start:at]).lstrip()
    after = _WHITESPACE.sub(" ", text[at + len(query) : end]).rstrip()
    after += "…" if end < len(text) else ""
    return before, text[at : at + len(query)], after


def conversations_search(visitor: Visitor, query: str, *, limit: int) -> list[SearchHit]:
    """The visitor's conversations whose title or any message (every branch; not deleted turns
    or generated-title jobs) contains `query`, case-insensitively, most recent first."""
    query = " ".join(query.split())
    if not query:
        return []
    in_messages = Message.objects.chat().filter(
        conversation_id=OuterRef("pk"), content__icontains=query
    )
    conversations = list(
        conversations_for(visitor)
        .filter(Q(title__icontains=query) | Exists(in_messages))
        .only("id", "title", "updated_at")
        .order_by("-updated_at", "-id")[:limit]
    )
    first_match = {}
    for conversation_id, content in (
        Message.objects.chat()
        .filter(conversation__in=[c.pk for c in conversations], content__icontains=query)
        .order_by("-id")
        .values_list("conversation_id", "content")
    ):
        first_match[conversation_id] = content  # ends as the earliest match of each
    return [
        SearchHit(c, _snippet(first_match[c.pk], query) if c.pk in first_match else None)
        for c in conversations
    ]
