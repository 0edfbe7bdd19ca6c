"""A conversation is a tree of messages; the page shows one branch of it.

Every message has a `parent` (the message it follows; None for the first). Versions of a reply
(Retry, Regenerate) and branches of an edited user message are siblings — children of the same
parent — numbered in the order they were made. The branch the owner sees is the path from the
root to `Conversation.current_leaf`; it is also exactly the history sent to the model for a reply
on it (`history_turns`). Choosing another version makes the newest line of messages below that
version the branch (`leaf_below`).

A deleted failed turn is taken out of the tree (its later messages are re-attached above it),
so live messages never hang below a deleted one.

These are pure functions over messages already loaded (a conversation's messages are few); the
writes that change the leaf live in chat/replies/start.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chat.attachments.store import turn_files
from chat.models import Conversation, Message
from chat.providers.base import ChatTurn, Role


@dataclass(frozen=True, slots=True)
class Versions:
    """Where a message stands among its siblings: `index` of `count` (1-based)."""

    index: int
    count: int
    previous_id: int | None
    next_id: int | None


class Tree:
    """The live (not deleted) chat messages of one conversation, by parent."""

    def __init__(self, messages: Iterable[Message]) -> None:
        self.by_id: dict[int, Message] = {}
        self.children: dict[int | None, list[Message]] = defaultdict(list)
        for message in sorted(messages, key=lambda m: m.pk):
            if message.deleted_at is not None or message.kind != Message.Kind.CHAT:
                continue
            self.by_id[message.pk] = message
        for message in self.by_id.values():
            parent = message.parent_id if message.parent_id in self.by_id else None
            self.children[parent].append(message)

    @classmethod
    def of(cls, conversation: Conversation) -> Tree:
        """Every chat message of `conversation` (not its title jobs), read once."""
        return cls(conversation.messages.filter(kind=Message.Kind.CHAT).select_related("author"))

    def path_to(self, message_id: int | None) -> list[Message]:
        """Root to `message_id`, inclusive (empty if it is not a live message)."""
        path: list[Message] = []
        node = self.by_id.get(message_id) if message_id is not None else None
        seen: set[int] = set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            path.append(node)
            node = self.by_id.get(node.parent_id) if node.parent_id is not None else None
        path.reverse()
        return path

    def leaf_below(self, message_id: int | None) -> int | None:
        """The end of the newest line of messages from `message_id` (None: from the roots)."""
        node_id = message_id
        while kids := self.children.get(node_id):
            node_id = kids[-1].pk
        return node_id

    def branch(self, leaf_id: int | None) -> list[Message]:
        """The branch ending at `leaf_id`, or the newest branch if that is not a live message."""
        if leaf_id not in self.by_id:
            leaf_id = self.leaf_below(None)
        return self.path_to(leaf_id)

    def versions(self, message: Message) -> Versions:
        parent = message.parent_id if message.parent_id in self.by_id else None
        siblings = self.children.get(parent, [])
        ids = [sibling.pk for sibling in siblings]
        index = ids.index(message.pk) if message.pk in ids else 0
        return Versions(
            index=index + 1,
            count=max(1, len(ids)),
            previous_id=ids[index - 1] if index > 0 else None,
            next_id=ids[index + 1] if index + 1 < len(ids) else None,
        )

    def annotate(self, messages: Sequence[Message]) -> list[Message]:
        """Attach `versions` to each message (the template shows ‹ 1/2 › from it)."""
        for message in messages:
            message.versions = self.versions(message)  # type: ignore[attr-defined]
        return list(messages)


def history_turns(path: Sequence[Message]) -> list[ChatTurn]:
    """The turns sent to the model for a reply whose ancestors are `path` (root first, ending
    with the user's question). A turn whose reply has no text (it failed or was stopped before
    the first token) is left out with its question: it is never merged into the next prompt,
    and the model is never asked to continue a reply nobody saw. A reply with partial text
    (stopped, or dropped mid-way) is sent as it was shown. Turns an API client sent as its own
    history (`from_client`) are passed on as it sent them, neighbours of one role joined.

    When more than one person has written on the branch (a shared conversation), each user
    turn carries its author's name; the provider adapter tells the model."""
    authors = {
        message.author_id
        for message in path
        if message.role == Message.Role.USER and message.author_id is not None
    }
    named = len(authors) > 1
    files = turn_files(
        [
            message.pk
            for message in path
            if message.role == Message.Role.USER and message.has_attachments
        ]
    )

    def user_turn(message: Message) -> ChatTurn:
        name = message.author.get_username() if named and message.author is not None else ""
        images, documents = files.get(message.pk, ((), ()))
        return ChatTurn("user", message.content, name=name, images=images, documents=documents)

    turns: list[ChatTurn] = []
    question: Message | None = None
    for message in path:
        if message.from_client:
            role: Role = "user" if message.role == Message.Role.USER else "assistant"
            # An API client's earlier user turn may carry images (chat/api/images.py).
            images, documents = files.get(message.pk, ((), ())) if role == "user" else ((), ())
            turns.append(ChatTurn(role, message.content, images=images, documents=documents))
            continue
        if message.role == Message.Role.USER:
            question = message  # a question with no reply before it is dropped
        elif question is not None and message.content and not message.is_streaming:
            turns += [user_turn(question), ChatTurn("assistant", message.content)]
            question = None
        else:
            question = None
    if question is not None:
        turns.append(user_turn(question))
    # Only where a client's own history meets the conversation can two turns of one role meet.
    joined: list[ChatTurn] = []
    for turn in turns:
        if joined and joined[-1].role == turn.role:
            name = turn.name if turn.name == joined[-1].name else ""
            joined[-1] = ChatTurn(
                turn.role,
                f"{joined[-1].content}\n\n{turn.content}",
                name,
                images=joined[-1].images + turn.images,
                documents=joined[-1].documents + turn.documents,
            )
        else:
            joined.append(turn)
    return joined
