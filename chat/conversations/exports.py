"""A conversation its owner takes with them: Markdown to read, JSON to keep.

Markdown is the branch the owner sees, as a transcript. JSON holds every branch — each message
with its `parent_id` and whether it is on the visible branch — so nothing the owner wrote or was
shown is lost (other versions of a reply, edited messages and what followed them). Deleted
failed turns and generated-title jobs are left out of both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from chat.conversations.tree import Tree
from chat.models import Attachment, Conversation, Message

FORMAT_VERSION = 1
_FEEDBACK: dict[int, str] = {Message.Feedback.UP: "good", Message.Feedback.DOWN: "bad"}


def export_filename(conversation: Conversation, extension: str) -> str:
    name = slugify(conversation.title)[:60].strip("-") or "conversation"
    return f"{name}-{timezone.localtime(conversation.created_at):%Y-%m-%d}.{extension}"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _attachments_of(messages: list[Message]) -> dict[int, list[Attachment]]:
    """The files sent with these messages (one query, only when some message has any)."""
    ids = [m.pk for m in messages if m.has_attachments]
    found: dict[int, list[Attachment]] = {}
    if ids:
        for attachment in Attachment.objects.filter(message_id__in=ids).order_by("created_at"):
            found.setdefault(attachment.message_id or 0, []).append(attachment)
    return found


def _attachment_url(attachment: Attachment) -> str:
    return reverse("chat:attachment", args=[attachment.pk])


def _attachment_record(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "included": attachment.included or None,
        "url": _attachment_url(attachment),
    }


def _message_record(
    message: Message, *, shown: bool, attachments: list[Attachment] | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": message.pk,
        "parent_id": message.parent_id,
        "on_visible_branch": shown,
        "role": message.role,
        "text": message.content,
        "created_at": _iso(message.created_at),
        # Who sent a user message, or asked for a reply (signed-in people; empty for others).
        "author": message.author.get_username() if message.author else None,
    }
    if attachments:
        record["attachments"] = [_attachment_record(a) for a in attachments]
    if message.role == Message.Role.ASSISTANT:
        record |= {
            "provider": message.provider,
            "model": message.model,
            "status": message.status,
            "ended_reason": message.ended_reason or None,
            "error": message.error_text or None,
            "finished_at": _iso(message.finished_at),
            "usage": {
                "input_tokens": message.input_tokens,
                "output_tokens": message.output_tokens,
                "cached_input_tokens": message.cached_input_tokens,
                "source": message.usage_source or None,
            },
            "cost_usd": message.cost_usd,
            "time_to_first_token_ms": message.ttft_ms,
            "tokens_per_second": message.tokens_per_second,
            # The owner's own rating of the reply: "good", "bad" or null, and their comment.
            "feedback": _FEEDBACK.get(message.feedback or 0),
            "feedback_comment": message.feedback_comment or None,
        }
    return record


def conversation_json(conversation: Conversation) -> str:
    tree = Tree.of(conversation)
    shown = {m.pk for m in tree.branch(conversation.current_leaf_id)}
    attachments = _attachments_of(list(tree.by_id.values()))
    document = {
        "format": "chatsite.conversation",
        "version": FORMAT_VERSION,
        "exported_at": _iso(timezone.now()),
        "id": str(conversation.pk),
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "provider": conversation.provider,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "branches": "all",
        "totals": {**conversation.totals(), "cost_usd": conversation.cost_microusd / 1_000_000},
        "messages": [
            _message_record(
                message, shown=message.pk in shown, attachments=attachments.get(message.pk)
            )
            for message in tree.by_id.values()
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def conversation_markdown(conversation: Conversation) -> str:
    tree = Tree.of(conversation)
    lines = [f"# {conversation.title or 'New chat'}", ""]
    lines.append(
        f"*Exported from chatsite on {timezone.localtime():%Y-%m-%d %H:%M}; "
        f"started {timezone.localtime(conversation.created_at):%Y-%m-%d %H:%M}. "
        "The branch shown in the chat; the JSON export holds every version.*"
    )
    if conversation.system_prompt:
        lines += ["", "**System prompt:**", "", _quoted(conversation.system_prompt)]
    # In a conversation several people wrote in, each message says whose it is.
    named = len({m.author_id for m in tree.by_id.values() if m.author_id is not None}) > 1
    branch = tree.branch(conversation.current_leaf_id)
    attachments = _attachments_of(branch)
    for message in branch:
        lines.append("")
        if message.role == Message.Role.USER:
            who = message.author.get_username() if named and message.author else "You"
            lines += [f"## {who}", ""]
            if message.content:
                lines.append(message.content)
            files = attachments.get(message.pk, [])
            if files and message.content:
                lines.append("")
            lines += [_attachment_line(attachment) for attachment in files]
            continue
        lines += [f"## Assistant · {message.model}", ""]
        if message.content:
            lines.append(message.content)
        if message.ended_reason and message.ended_reason != Message.EndedReason.COMPLETED:
            ending = message.get_ended_reason_display()
            detail = f": {message.error_text}" if message.error_text else ""
            lines += ["", f"*({ending}{detail})*"]
    return "\n".join(lines).rstrip() + "\n"


def _attachment_line(attachment: Attachment) -> str:
    label = attachment.name.replace("[", "(").replace("]", ")")
    detail = f"{attachment.size:,} bytes"
    if attachment.included:
        detail += f"; the model read {attachment.included}"
    return f"- 📎 [{label}](<{_attachment_url(attachment)}>) ({detail})"


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
