"""Reading a chat completion request as OpenAI's API does: every field the API reads is
type-checked, nesting is bounded before parsing, integers are bounded to what the database
stores."""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from django.conf import settings

from chat import providers
from chat.api.wire.errors import WireError, _shown, invalid
from chat.providers.base import ChatTurn


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An `image_url` content part of a user message: a data URL's bytes, or a remote URL."""

    param: str  # where it is in the request: "messages[2].content[1]"
    data: bytes = b""
    url: str = ""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: providers.ModelOption
    system_prompt: str
    history: list[ChatTurn]  # the turns before the last user message, oldest first
    text: str  # the last user message: the one this reply answers
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    images: tuple[ImagePart, ...] = ()  # the last user message's
    history_images: tuple[tuple[ImagePart, ...], ...] = ()  # each earlier turn's, as `history`


# Sampling and bookkeeping parameters (temperature, top_p, penalties, stop, seed, user, metadata,
# store, ...) are accepted and ignored: the providers here do not expose them, and clients send
# them by default. So is any other unknown parameter (OpenAI rejects those; being lenient keeps
# older and newer clients working). What would change the answer's shape is refused below.


# A request is a few levels deep (body → messages → a message → its content parts); past this a
# body is refused before it is parsed: Python's parser recurses per level and fails with a
# RecursionError near 1,000 (a 500 before, issue 18).
MAX_JSON_DEPTH = 64
# What the database stores for a reply's output cap (PostgreSQL's integer); the cap itself is
# CHAT_MAX_OUTPUT_TOKENS, which is never more.
MAX_STORED_INTEGER = 2**31 - 1

# A JSON string, escapes included; one that is never closed runs to the end of the body (so the
# pattern always matches in one pass, and an unterminated string costs no backtracking).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `raw` opens more than `limit` arrays and objects inside one another (brackets in
    strings do not count). Linear in the body, and cheap for ordinary ones."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return any(depth > limit for depth in accumulate(map(_DEPTH_STEP.__getitem__, brackets)))


def parse_completion_request(raw: bytes) -> CompletionRequest:
    if json_too_deep(raw):
        raise invalid(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; no request "
            "needs that many."
        )
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    _refuse_unsupported(body)
    model = model_from(body.get("model"))
    system_parts, turns, images = _turns(body.get("messages"), model)
    stream = _optional_bool(body, "stream") or False
    stream_options = body.get("stream_options")
    if stream_options is None:
        stream_options = {}
    if not isinstance(stream_options, dict):
        raise invalid("'stream_options' must be an object.", param="stream_options")
    if stream_options and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    include_usage = _optional_bool(
        stream_options, "include_usage", param="stream_options.include_usage"
    )
    return CompletionRequest(
        model=model,
        system_prompt="\n\n".join(system_parts),
        history=turns[:-1],
        text=turns[-1].content,
        stream=stream,
        include_usage=bool(include_usage),
        max_tokens=_max_tokens(body),
        images=images[-1],
        history_images=tuple(images[:-1]),
    )


def _optional_bool(body: dict[str, Any], name: str, *, param: str | None = None) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"'{param or name}' must be true or false.", param=param or name)
    return value


def _optional_list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"'{name}' must be an array.", param=name)
    return value


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name in ("tools", "functions"):
        if _optional_list(body, name):
            raise invalid(
                "Tools and function calling are not supported by this server.",
                param=name,
                code="unsupported_parameter",
            )
    if body.get("tool_choice") not in (None, "none"):
        raise invalid(
            "Tools and function calling are not supported by this server.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise invalid("'n' must be an integer.", param="n")
    if n not in (None, 1):
        raise invalid("Only n=1 is supported.", param="n", code="unsupported_value")
    if _optional_bool(body, "logprobs"):
        raise invalid("logprobs are not supported.", param="logprobs", code="unsupported_value")
    if body.get("audio") is not None:
        raise invalid("Only text output is supported.", param="audio", code="unsupported_value")
    modalities = body.get("modalities")
    if modalities is not None and not isinstance(modalities, list):
        raise invalid("'modalities' must be an array of strings.", param="modalities")
    if any(modality != "text" for modality in modalities or []):
        raise invalid(
            "Only text output is supported.", param="modalities", code="unsupported_value"
        )
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise invalid(
            "Only response_format {'type': 'text'} is supported.",
            param="response_format",
            code="unsupported_value",
        )


def model_from(value: Any) -> providers.ModelOption:
    """The offered model a request names: a "provider:model" id, or a bare model name when only
    one provider offers it."""
    if not isinstance(value, str) or not value:
        raise invalid("You must provide a model parameter.", param="model")
    options = providers.available_models()
    if not options:
        raise WireError(
            503,
            "No model is configured on this server.",
            type="server_error",
            code="service_unavailable",
        )
    if option := providers.resolve_model(value):
        return option
    named = [option for option in options if option.model == value]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        choices = ", ".join(option.value for option in named)
        raise invalid(
            f"The model {_shown(value)} is offered by several providers; use one of: {choices}.",
            param="model",
            code="model_ambiguous",
        )
    raise WireError(
        404,
        f"The model {_shown(value)} does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def _turns(
    messages: Any, model: providers.ModelOption
) -> tuple[list[str], list[ChatTurn], list[tuple[ImagePart, ...]]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array.", param="messages")
    system_parts: list[str] = []
    turns: list[ChatTurn] = []
    turn_images: list[tuple[ImagePart, ...]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object.", param=param)
        role = message.get("role")
        if (
            role in ("tool", "function")
            or message.get("tool_calls")
            or message.get("function_call")
        ):
            raise invalid(
                "Tool and function messages are not supported by this server.",
                param=f"{param}.role",
                code="unsupported_parameter",
            )
        if role not in ("system", "developer", "user", "assistant"):
            raise invalid(
                f"Invalid value for {param}.role: {_shown(role)}. Supported values are 'system', "
                "'developer', 'user' and 'assistant'.",
                param=f"{param}.role",
                code="invalid_value",
            )
        text, images = _content_of(message.get("content"), param=f"{param}.content", role=role)
        if images and not model.sees_images:
            raise invalid(
                f"The model {_shown(model.value)} cannot see images; {images[0].param} is an "
                "image. Send it to a model that can, or leave the image out.",
                param=images[0].param,
                code="model_not_vision",
            )
        if role in ("system", "developer"):
            if text.strip():
                system_parts.append(text.strip())
        else:
            turns.append(ChatTurn(role, text))
            turn_images.append(tuple(images))
    if not turns or turns[-1].role != "user":
        raise invalid(
            "The last message (after any system messages) must have the role 'user'.",
            param="messages",
        )
    if not turns[-1].content.strip() and not turn_images[-1]:
        raise invalid(
            "The last user message is empty.", param=f"messages[{len(messages) - 1}].content"
        )
    total = sum(len(images) for images in turn_images)
    if total > settings.CHAT_API_MAX_IMAGES:
        raise invalid(
            f"This request carries {total} images; the limit is {settings.CHAT_API_MAX_IMAGES} "
            "(earlier turns included).",
            param="messages",
            code="too_many_images",
        )
    return system_parts, turns, turn_images


def _content_of(content: Any, *, param: str, role: str) -> tuple[str, list[ImagePart]]:
    """A message's text, and its images (user messages only)."""
    if isinstance(content, str):
        return content, []
    if content is None:
        return "", []
    if not isinstance(content, list):
        raise invalid(f"{param} must be a string or an array of content parts.", param=param)
    texts: list[str] = []
    images: list[ImagePart] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind == "image_url" and role == "user":
            images.append(_image_part(part.get("image_url"), param=f"{param}[{index}]"))
        elif kind == "image_url":
            raise invalid(
                f"Images can only be sent in user messages; {param}[{index}] is in a "
                f"{_shown(role)} message.",
                param=f"{param}[{index}]",
                code="unsupported_content",
            )
        else:
            raise invalid(
                f"Only text and image_url content is supported here; {param}[{index}] has type "
                f"{_shown(kind)} (audio and files are not supported).",
                param=f"{param}[{index}]",
                code="unsupported_content",
            )
    cap = settings.CHAT_MAX_FILES_PER_MESSAGE
    if len(images) > cap:
        raise invalid(
            f"A message can carry at most {cap} image{'' if cap == 1 else 's'}; {param} has "
            f"{len(images)}.",
            param=param,
            code="too_many_images",
        )
    return "\n".join(texts), images


# data:image/png;base64,… (parameters such as ;charset= before ;base64 are allowed and ignored).
_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.IGNORECASE)


def _image_part(image_url: Any, *, param: str) -> ImagePart:
    """An image_url part: `{"url": "data:image/…;base64,…" or "https://…", "detail": …}`."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise invalid(f"{param}.image_url.url must be a URL string.", param=f"{param}.image_url")
    param = f"{param}.image_url"
    limit = settings.CHAT_MAX_UPLOAD_BYTES
    if header := _DATA_URL.match(url[:200]):
        media_type = header.group(1).lower()
        if not media_type.startswith("image/") or ";base64" not in header.group(2).lower():
            raise invalid(
                f"{param} is not an image data URL: send 'data:image/png;base64,…' (or JPEG, "
                "WebP, GIF).",
                param=param,
                code="invalid_image_url",
            )
        encoded = url[header.end() :]
        if len(encoded) // 4 * 3 > limit + 3:
            raise invalid(
                f"The image in {param} is larger than the {limit:,} bytes allowed.",
                param=param,
                code="image_too_large",
            )
        try:
            data = binascii.a2b_base64(encoded, strict_mode=True)  # ASCII str: no copy
        except (binascii.Error, ValueError):
            raise invalid(
                f"The image in {param} could not be decoded: its data is not valid base64.",
                param=param,
                code="invalid_base64",
            ) from None
        if len(data) > limit:
            raise invalid(
                f"The image in {param} is larger than the {limit:,} bytes allowed.",
                param=param,
                code="image_too_large",
            )
        if not data:
            raise invalid(f"The image in {param} is empty.", param=param, code="invalid_image")
        return ImagePart(param=param, data=data)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise invalid(
            f"{param} must be a data URL (data:image/png;base64,…) or an https URL.",
            param=param,
            code="invalid_image_url",
        )
    if not settings.CHAT_API_FETCH_IMAGE_URLS:
        raise invalid(
            f"This server does not fetch image URLs ({param}); send the image itself as a data "
            "URL: data:image/png;base64,….",
            param=param,
            code="image_url_not_allowed",
        )
    return ImagePart(param=param, url=url)


def _max_tokens(body: dict[str, Any]) -> int | None:
    """The output cap a request asks for, never more than the server's (CHAT_MAX_OUTPUT_TOKENS):
    a larger one is capped here, before anything is stored, so no integer the database cannot
    hold reaches it."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(f"'{name}' must be a positive integer.", param=name)
        return min(value, settings.CHAT_MAX_OUTPUT_TOKENS, MAX_STORED_INTEGER)
    return None
