"""Files sent with a message: the ids a send names are checked against the sender (their own,
not yet sent, at most CHAT_MAX_FILES_PER_MESSAGE) and against the model (images only to one
that sees them), then bound to the message in the transaction that saves it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.conf import settings

from chat.conversations.errors import ChatInputError
from chat.conversations.reads import Visitor
from chat.models import Attachment, Message

GONE = "An attached file is no longer available (files are kept a day until sent). Attach it again."


def attachment_ids_clean(ids: Sequence[object]) -> list[uuid.UUID]:
    """The distinct attachment ids of a send, or ChatInputError in words."""
    cleaned: list[uuid.UUID] = []
    for value in ids:
        try:
            attachment_id = uuid.UUID(str(value))
        except ValueError:
            raise ChatInputError(GONE) from None
        if attachment_id not in cleaned:
            cleaned.append(attachment_id)
    cap = settings.CHAT_MAX_FILES_PER_MESSAGE
    if len(cleaned) > cap:
        raise ChatInputError(
            f"A message can carry at most {cap} file{'' if cap == 1 else 's'}; this one has "
            f"{len(cleaned)}. Remove some and send again."
        )
    return cleaned


def attachments_take(
    visitor: Visitor, ids: Sequence[uuid.UUID], *, sees_images: bool, model_label: str
) -> list[Attachment]:
    """The sender's own unsent attachments named by `ids`, locked; call inside the send's
    transaction. Someone else's id is refused exactly like one that does not exist."""
    if not ids:
        return []
    attachments = list(
        Attachment.objects.select_for_update()
        .owned_by(user=visitor.user, visitor_id=visitor.visitor_id)
        .unsent()
        .filter(pk__in=ids)
        .order_by("created_at")
    )
    if len(attachments) != len(ids):
        raise ChatInputError(GONE)
    if not sees_images and any(a.kind == Attachment.Kind.IMAGE for a in attachments):
        raise ChatInputError(
            f"{model_label} cannot see images. Pick a model that can, or remove the image and "
            "send again."
        )
    return attachments


def attachments_bind(attachments: Sequence[Attachment], message: Message) -> None:
    """Mark the attachments as sent with `message` (inside the same transaction)."""
    if attachments:
        Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)


def attachments_copy(original: Message, message: Message) -> None:
    """Give an edited message's new version the files of the original (new rows sharing the
    stored files), so the edit is sent with them."""
    for attachment in Attachment.objects.filter(message=original).order_by("created_at"):
        attachment.pk = uuid.uuid4()
        attachment._state.adding = True
        attachment.message = message
        attachment.save(force_insert=True)
