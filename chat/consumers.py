"""The WebSocket transport, driven by htmx 4's hx-ws extension. Thin: it turns frames into
service calls and reply updates into frames.

Incoming frames are JSON (form values plus "headers", as hx-ws sends them) with an "action":
  send   {message, model, system_prompt, conversation}   start a reply
  stop   {conversation}                                   stop its streaming reply
  watch  {message_id, after}                              stream a reply from seq `after`
Outgoing frames are HTML whose elements carry hx-swap-oob.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404

from chat import services
from chat.delivery import reply_updates
from chat.rendering import error_fragment, started_fragment
from chat.selectors import Visitor, message_get
from chat.signals import VISITOR_SESSION_KEY

logger = logging.getLogger(__name__)

# Closing with these tells hx-ws not to reconnect (they are not in its reconnect list).
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_FRAME = 4400


class ChatConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Each socket gets its own thread for its database work. Without this, every consumer
        # of the process shares one thread, and one slow query stalls them all
        # (django/channels#2132).
        async with ThreadSensitiveContext():
            await super().__call__(scope, receive, send)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if settings.CHAT_REQUIRE_LOGIN and not (user and user.is_authenticated):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        session = self.scope.get("session")
        visitor_id = session.get(VISITOR_SESSION_KEY, "") if session is not None else ""
        self.visitor = Visitor(user=user, visitor_id=visitor_id)
        # One reader per reply this socket follows. Readers are tasks so that receive() stays
        # free to handle "stop" while a reply streams.
        self.readers: dict[int, asyncio.Task[None]] = {}
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Cancel the readers only: the replies themselves are jobs and go on without us.
        for reader in getattr(self, "readers", {}).values():
            reader.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = json.loads(text_data or "")
            if not isinstance(frame, dict):
                raise ValueError("frame is not an object")
        except ValueError:
            await self.close(code=CLOSE_BAD_FRAME)
            return
        action = frame.get("action") or "send"
        try:
            if action == "send":
                await self.send_message(frame)
            elif action == "stop":
                await services.reply_stop(
                    visitor=self.visitor, conversation_id=str(frame.get("conversation", ""))
                )
            elif action == "watch":
                await self.watch(frame.get("message_id"), frame.get("after"))
            else:
                await self.send(text_data=error_fragment(f"Unknown action {action!r}."))
        except Http404:
            # The socket stays open: it also carries the visitor's other replies.
            await self.send(text_data=error_fragment("Not found."))
        except services.ChatInputError as exc:
            await self.send(text_data=error_fragment(exc.message))

    async def send_message(self, frame: dict[str, Any]) -> None:
        started = await services.areply_start(
            visitor=self.visitor,
            conversation_id=str(frame.get("conversation") or "") or None,
            text=str(frame.get("message", "")),
            model_choice=str(frame.get("model", "")),
            system_prompt=str(frame.get("system_prompt", "")),
        )
        # The page then asks to watch the new streaming reply, the same way it resumes one.
        await self.send(text_data=await database_sync_to_async(started_fragment)(started))

    async def watch(self, message_id: Any, after: Any) -> None:
        message = await database_sync_to_async(message_get)(self.visitor, message_id)
        try:
            offset = max(0, int(after or 0))
        except (TypeError, ValueError):
            offset = 0
        if previous := self.readers.pop(message.pk, None):
            previous.cancel()
        self.readers[message.pk] = asyncio.create_task(self.forward(message.pk, offset))

    async def forward(self, message_id: int, after: int) -> None:
        try:
            async for update in reply_updates(message_id, after=after):
                if update is not None:
                    await self.send(text_data=update.html)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Forwarding reply %s failed", message_id)
        finally:
            if self.readers.get(message_id) is asyncio.current_task():
                with contextlib.suppress(KeyError):
                    del self.readers[message_id]
