"""The OpenAI wire format: reading a chat completion request (`requests`), writing completions,
chunks, models (`responses`) and errors (`errors`) exactly as OpenAI's API does, so its SDKs and
other clients work unchanged.

Nothing here touches the database or the reply stream; the views pass in what to write.
"""

from __future__ import annotations

from chat.api.wire.errors import WireError, invalid
from chat.api.wire.requests import (
    MAX_JSON_DEPTH,
    MAX_STORED_INTEGER,
    CompletionRequest,
    ImagePart,
    json_too_deep,
    model_from,
    parse_completion_request,
)
from chat.api.wire.responses import (
    DONE,
    ChunkWriter,
    completion_id,
    completion_object,
    ending_error,
    finish_reason,
    model_id,
    model_object,
    models_list,
    output_cap,
    sse,
    usage_object,
)

__all__ = [
    "DONE",
    "MAX_JSON_DEPTH",
    "MAX_STORED_INTEGER",
    "ChunkWriter",
    "CompletionRequest",
    "ImagePart",
    "WireError",
    "completion_id",
    "completion_object",
    "ending_error",
    "finish_reason",
    "invalid",
    "json_too_deep",
    "model_from",
    "model_id",
    "model_object",
    "models_list",
    "output_cap",
    "parse_completion_request",
    "sse",
    "usage_object",
]
