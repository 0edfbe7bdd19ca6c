"""Running a reply's job to its end in the test's own event loop."""

from __future__ import annotations

import asyncio

from chat.models import Message
from chat.replies import generation


async def run_job(message_id: int, timeout: float = 10) -> Message:
    await asyncio.wait_for(generation.reply_generate(message_id), timeout)
    return await Message.objects.aget(pk=message_id)
