"""Writing completions, chunks, models and errors exactly as OpenAI's API does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat import providers
from chat.api.wire.errors import WireError
from chat.http.backpressure import sse_data
from chat.models import Message


def completion_id(conversation_id: Any) -> str:
    return f"chatcmpl-{conversation_id.hex}"


def output_cap(message: Message) -> int:
    caps = [settings.CHAT_MAX_OUTPUT_TOKENS]
    if message.max_output_tokens:
        caps.append(message.max_output_tokens)
    return min(caps)


def finish_reason(message: Message) -> str | None:
    """OpenAI's finish_reason for an ended reply: "length" when it was cut short by a limit
    (the output token cap, the reply size cap or the spending cap), else "stop"."""
    if message.is_streaming:
        return None
    if message.ended_reason in (Message.EndedReason.TOO_LONG, Message.EndedReason.BUDGET):
        return "length"
    if (
        message.usage_source == Message.UsageSource.PROVIDER
        and message.output_tokens is not None
        and message.output_tokens >= output_cap(message)
    ):
        return "length"
    return "stop"


def usage_object(message: Message) -> dict[str, Any]:
    prompt = message.input_tokens or 0
    completion = message.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": message.cached_input_tokens or 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def model_id(message: Message) -> str:
    return f"{message.provider}:{message.model}"


def completion_object(
    message: Message, *, conversation_id: Any, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """A `chat.completion`; with `metadata`, the stored-completion shape that retrieve returns."""
    body: dict[str, Any] = {
        "id": completion_id(conversation_id),
        "object": "chat.completion",
        "created": int(message.created_at.timestamp()),
        "model": model_id(message),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": message.content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason(message),
            }
        ],
        "usage": None if message.is_streaming else usage_object(message),
        "service_tier": "default",
        "system_fingerprint": None,
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


@dataclass(frozen=True, slots=True)
class ChunkWriter:
    """Writes one streamed completion's `chat.completion.chunk` events."""

    id: str
    created: int
    model: str
    include_usage: bool

    def _event(self, choices: list[dict[str, Any]], usage: Any = None) -> str:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            # OpenAI sends `"usage": null` on every chunk but the last when usage is asked for.
            data["usage"] = usage
        return sse(data)

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def role(self) -> str:
        return self._event([self._choice({"role": "assistant", "content": "", "refusal": None})])

    def content(self, text: str) -> str:
        return self._event([self._choice({"content": text})])

    def finish(self, reason: str) -> str:
        return self._event([self._choice({}, reason)])

    def usage(self, message: Message) -> str:
        return self._event([], usage_object(message))


def sse(data: dict[str, Any] | str) -> str:
    # JSON has no raw line breaks, so one data: line always holds the whole event.
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{sse_data(text)}\n"


DONE = sse("[DONE]")


def model_object(option: providers.ModelOption) -> dict[str, Any]:
    # No creation date is known for a configured model; 0 is what OpenAI-compatible servers
    # commonly send then.
    return {"id": option.value, "object": "model", "created": 0, "owned_by": option.provider}


def models_list() -> dict[str, Any]:
    return {"object": "list", "data": [model_object(o) for o in providers.available_models()]}


_ENDING_ERRORS = {
    Message.EndedReason.PROVIDER_ERROR: (502, "server_error", "provider_error"),
    Message.EndedReason.TIMEOUT: (504, "server_error", "timeout"),
    Message.EndedReason.INTERRUPTED: (503, "server_error", "interrupted"),
    Message.EndedReason.SERVICE_ERROR: (503, "server_error", "service_unavailable"),
}


def ending_error(message: Message, *, completion: str) -> WireError | None:
    """The error a reply that failed ends with (None if it did not fail). Its partial text is
    saved: the message says where to fetch it."""
    if message.status != Message.Status.ERROR:
        return None
    status, kind, code = _ENDING_ERRORS.get(
        message.ended_reason,  # type: ignore[call-overload]
        (502, "server_error", message.ended_reason or "provider_error"),
    )
    text = message.error_text or "The reply failed."
    if message.content:
        text += f" The partial reply is saved: GET /v1/chat/completions/{completion}."
    return WireError(status, text, type=kind, code=code)
