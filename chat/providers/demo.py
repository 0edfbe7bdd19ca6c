"""The offline `demo` model: no key, no network, deterministic for a given prompt.

It streams a plausible Markdown reply (paragraphs, a list, a code block) at a steady pace, so a
fresh checkout shows real streaming — and the tests get a reply whose text they can predict.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Sequence

from chat.providers.base import ChatTurn, Event, TextDelta, Usage, estimate_tokens, turn_text

_OPENINGS = [
    "Good question. Here is how I would think about **{topic}**.",
    "Let's take **{topic}** step by step.",
    "Short answer: it depends, but **{topic}** has a few moving parts worth separating.",
    "Here is a practical way to approach **{topic}**.",
]
_MIDDLES = [
    "The key idea is to keep the parts that change independently apart, so each can be "
    "tested and replaced on its own.",
    "Most of the difficulty comes from state: where it lives, who may change it, and what "
    "happens when a step fails halfway.",
    "It helps to write down the expected inputs and outputs first, then the error cases, "
    "before choosing any tool.",
    "Measure before optimising; the slow part is rarely where intuition puts it.",
]
_POINTS = [
    "Start with the smallest version that works end to end.",
    "Make failures visible: log them and show them to the user.",
    "Keep configuration in the environment, not in code.",
    "Write a test for each bug before fixing it.",
    "Prefer boring, well-kept libraries over clever code.",
    "Document the one command that sets everything up.",
]
_CODE = [
    (
        "python",
        "def answer(question: str) -> str:\n"
        "    words = question.split()\n"
        "    return f\"{len(words)} words, first: {words[0] if words else '-'}\"\n",
    ),
    (
        "javascript",
        "const answer = (question) => {\n  const words = question.trim().split(/\\s+/);\n"
        "  return `${words.length} words`;\n};\n",
    ),
    ("bash", "# Set up and run\nmake run\ncurl -s http://127.0.0.1:8000/streaming-demo | head\n"),
]
_CLOSINGS = [
    "If you share more detail about **{topic}**, I can be more specific.",
    "That should be enough to get started; ask again if a step is unclear.",
    "This is the offline demo model, so treat it as a sketch rather than advice.",
]

# Split into word-sized tokens that keep their whitespace, so the concatenation is exact.
_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def demo_reply(prompt: str, *, seed: int = 0) -> str:
    """The full reply the demo model gives to `prompt` (the same text every time)."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    rng = random.Random(digest)  # noqa: S311 - not for security, only for a varied demo
    words = prompt.replace("*", "").replace("`", "").split()
    topic = " ".join(words[:10]).strip(" ?.!,:;") or "this"
    if len(words) > 10:
        topic += "…"
    lang, code = rng.choice(_CODE)
    points = rng.sample(_POINTS, 3)
    parts = [
        rng.choice(_OPENINGS).format(topic=topic),
        " ".join(rng.sample(_MIDDLES, 2)),
        "\n".join(f"{i}. {point}" for i, point in enumerate(points, start=1)),
        "A small example:",
        f"```{lang}\n{code}```",
        rng.choice(_CLOSINGS).format(topic=topic),
    ]
    return "\n\n".join(parts)


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


class DemoProvider:
    """Streams `demo_reply(last user message)` at `tokens_per_second`."""

    name = "demo"

    def __init__(self, *, tokens_per_second: float = 30.0) -> None:
        self.delay = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0

    async def stream(
        self,
        turns: Sequence[ChatTurn],
        *,
        model: str,
        system_prompt: str = "",
        max_output_tokens: int = 4096,
    ) -> AsyncIterator[Event]:
        prompt = turns[-1].content if turns else ""
        tokens = tokenize(demo_reply(prompt))[:max_output_tokens]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, token in enumerate(tokens):
            # Pace against the clock rather than sleeping a fixed delay per token, so the
            # rate holds even when the event loop is busy.
            if self.delay:
                await asyncio.sleep(max(0.0, started + index * self.delay - loop.time()))
            yield TextDelta(token)
        prompt_text = system_prompt + "".join(turn_text(turn) for turn in turns)
        yield Usage(input_tokens=estimate_tokens(prompt_text), output_tokens=len(tokens))
