"""The one small protocol every model provider implements.

A provider turns a conversation into a stream of events: text deltas as they arrive, and at most
one usage record (normally last). Providers know nothing about Django models, the database or
transports; the generation job (`chat.replies.generation`) drives them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str
    # Who wrote a user turn, when more than one person writes in the conversation (a shared
    # one); each adapter tells the model in its own way (docs/features.md, "Sharing and rooms").
    name: str = ""
    # Files attached to a user turn (docs/attachments.md): images each adapter sends in its SDK's
    # own form, and documents' text, sent to every model as delimited blocks (`turn_text`).
    images: tuple[TurnImage, ...] = ()
    documents: tuple[TurnDocument, ...] = ()


@dataclass(frozen=True, slots=True)
class TurnImage:
    media_type: str  # image/jpeg or image/png: re-encoded by chatsite
    data: bytes


@dataclass(frozen=True, slots=True)
class TurnDocument:
    name: str
    text: str
    included: str  # what of the file the text is, in words: "pages 1–40 of 300"


def _attribute(value: str) -> str:
    return " ".join(value.replace("&", "&amp;").replace('"', "&quot;").split())


def turn_text(turn: ChatTurn) -> str:
    """The turn's text with its documents before it, each in a block that names the file."""
    blocks = [
        f'<document name="{_attribute(document.name)}" included="{_attribute(document.included)}">'
        f"\n{document.text}\n</document>"
        for document in turn.documents
    ]
    return "\n\n".join([*blocks, turn.content]) if blocks else turn.content


def openai_name(name: str) -> str:
    """`name` as OpenAI accepts it on a message (`^[a-zA-Z0-9_-]{1,64}$`), or empty."""
    cleaned = re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_")[:64]
    return cleaned


def named_content(turn: ChatTurn) -> str:
    """The turn's text prefixed with its author's name, for providers without a name field."""
    if not turn.name:
        return turn_text(turn)
    name = " ".join(turn.name.replace("]", ")").split())[:64]
    return f"[{name}]: {turn_text(turn)}"


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them.

    `input_tokens` counts every prompt token, cached ones included; `cached_input_tokens` says
    how many of them were read from the provider's prompt cache.
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0


def estimate_tokens(text: str) -> int:
    return estimate_tokens_for_chars(len(text))


# About four characters a token for English text; good enough for a marked estimate.
CHARS_PER_TOKEN = 4


def estimate_tokens_for_chars(chars: int) -> int:
    return max(1, round(chars / CHARS_PER_TOKEN)) if chars else 0


Event = TextDelta | Usage


class ProviderError(Exception):
    """A failure the user should see in the reply bubble, in words they can act on."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class Provider(Protocol):
    name: str

    def stream(
        self,
        turns: Sequence[ChatTurn],
        *,
        model: str,
        system_prompt: str = "",
        max_output_tokens: int,
    ) -> AsyncIterator[Event]:
        """Stream the reply to `turns` (oldest first, ending with the user's message).

        Yields `TextDelta`s, then a `Usage` when the provider reports one. Raises `ProviderError`
        for failures the user can understand (bad key, rate limit, upstream error). Cancelling
        the iteration (the job does so on stop or timeout) must close the upstream request.
        """
        ...
