"""The OpenAI-compatible API: `/v1/chat/completions` and `/v1/models` over personal API keys.

`wire` speaks OpenAI's format, `keys` handles the keys, `completions` starts and finds replies
through `chat.replies.start` exactly as the page does, and `views` are the thin HTTP layer.
"""
