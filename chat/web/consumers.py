"""The WebSocket transport, driven by htmx 4's hx-ws extension. Thin: it turns frames into
service calls and reply updates into frames.

Incoming frames are JSON (form values plus "headers", as hx-ws sends them) with an "action":
  send   {message, model, system_prompt, conversation}   start a reply
  stop   {conversation}                                   stop its streaming reply
  watch  {message_id, after}                              stream a reply from seq `after`
  join   {conversation, client}                           enter the conversation's live room
  typing {conversation}                                   tell the room this person is typing
Outgoing frames are HTML whose elements carry hx-swap-oob.

A shared conversation's room (chat/rooms/) reaches this socket through the channel layer's
group: who is here, who is typing, the owner's presence switch, other members' sends (whose
replies this socket then follows from the reply stream, like any other), and a removal, which
closes the socket with 4403.
The room is an extra: while the layer's Redis is down, room operations are logged and skipped,
and the layer's `receive` waits for Redis (chat/rooms/redis_layer.py) instead of failing the
socket, so send, stop and watch go on.

What one socket can make this process hold is bounded: frames have a size cap, watches a rate,
readers a count per person and per IP, a reply is never sent twice on one socket, and a client
that stops reading is dropped once Daphne holds CHAT_MAX_CONNECTION_BUFFER_BYTES for it (the
reply goes on; hx-ws reconnects and the page resumes from the last sequence number it has).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404

from chat.adapters.daphne_transport import SEND_ON_CLOSED_ERRORS
from chat.conversations.errors import ChatInputError
from chat.conversations.limits import ReaderSlot, TooManyReaders, reader_acquire, scope_client_ip
from chat.conversations.reads import Visitor, conversation_get, message_get
from chat.db import db_read
from chat.replies import start as services
from chat.rooms.connection import RoomConnection
from chat.rooms.layer import room_guarded
from chat.rooms.presence import HEARTBEAT_SECONDS, presence_on
from chat.telemetry import metrics
from chat.web.rendering import error_fragment, started_fragment
from chat.web.rooms import (
    announce_started,
    display_name,
    page_origin,
    presence_fragment,
    presence_switch_fragment,
    removed_fragment,
    room_started_html,
    typing_fragment,
)
from chat.web.updates import reply_updates
from chat.web.visitors import visitor_id_from_scope

logger = logging.getLogger(__name__)

# Closing with these tells hx-ws not to reconnect (they are not in its reconnect list).
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_FRAME = 4400
# "Try again later": hx-ws reconnects after a back-off, and the page resumes its replies.
CLOSE_TOO_SLOW = 1013
# Removed from the conversation: not in hx-ws's reconnect list either.
CLOSE_REMOVED = 4403

# Replies a socket remembers having sent (to never send them again); older ones may be re-sent.
REMEMBERED_REPLIES = 256
# Sequence numbers and ids are small positive integers; anything else is not one of ours.
MAX_INT_DIGITS = 15


def _small_int(value: Any) -> int | None:
    """A non-negative integer from a frame field, or None for anything else (floats such as
    1e400, huge numbers, nested objects)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**MAX_INT_DIGITS else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) if len(value) <= MAX_INT_DIGITS else None
    return None


def _text_field(frame: dict[str, Any], name: str) -> str:
    value = frame.get(name, "")
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ChatInputError("That message could not be read. Reload the page and try again.")


def _list_field(frame: dict[str, Any], name: str) -> list[str]:
    """A form field that may repeat (hx-ws sends one value as a string, several as a list)."""
    value = frame.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    # More than a message could ever carry is not read at all.
    if isinstance(value, list) and len(value) <= 100 and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    raise ChatInputError("That message could not be read. Reload the page and try again.")


class ChatConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Each socket gets its own thread for its other database work (sign-in, a send's checks,
        # stop). Without this, every consumer of the process shares one thread, and one slow
        # query stalls them all (django/channels#2132). A reply's reads use the shared reply
        # database threads instead (chat/db/threads.py), which keep their connections.
        async with ThreadSensitiveContext():
            await super().__call__(scope, receive, send)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if settings.CHAT_REQUIRE_LOGIN and not (user and user.is_authenticated):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        visitor_id = visitor_id_from_scope(self.scope)
        self.visitor = Visitor(
            user=user, visitor_id=visitor_id, client_ip=scope_client_ip(self.scope)
        )
        # One reader per reply this socket follows. Readers are tasks so that receive() stays
        # free to handle "stop" while a reply streams.
        self.readers: dict[int, asyncio.Task[None]] = {}
        # The last sequence number sent per reply (-1: its final fragment went out).
        self.delivered: OrderedDict[int, int] = OrderedDict()
        self.watch_times: list[float] = []
        self.closing = False
        # The live room this socket is in (the conversation its page shows), and its beat.
        self.room: RoomConnection | None = None
        self.room_beat: asyncio.Task[None] | None = None
        self.page_origin = ""
        await self.accept()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections on this consumer's thread before each
        # message, a hop to that thread. The room's events do no database work there (a
        # reply's bubbles are read on the reply database threads), and with many people coming
        # and going that hop was ~15 % of the server's CPU (benchmarks/room_fanout.py).
        handler = getattr(self, get_handler_name(message), None)
        if handler is not None and str(message.get("type", "")).startswith("room."):
            await handler(message)
            return
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        # Cancel the readers only: the replies themselves are jobs and go on without us.
        for reader in getattr(self, "readers", {}).values():
            reader.cancel()
        await self.leave_room()

    # --- The live room ---------------------------------------------------------------------

    async def enter_room(self, conversation_id: str, client: str = "") -> None:
        """Enter the room of the conversation the page shows (one room per socket)."""
        if not self.visitor.is_authenticated or self.channel_layer is None:
            return  # nobody shares a conversation with an anonymous visitor
        conversation = await db_read(conversation_get, self.visitor, conversation_id)
        self.page_origin = page_origin(client) if client else self.page_origin
        if self.room is not None and self.room.conversation_id == str(conversation.pk):
            return
        await self.leave_room()
        self.room = RoomConnection(
            conversation.pk,
            user_id=self.visitor.user.pk,
            name=display_name(self.visitor.user),
            channel=self.channel_name,
            presence=presence_on(conversation),
        )
        # Redis unreachable: the socket stays in the room regardless; the layer adds its channel
        # to the group again when Redis is back, and the heartbeat writes its presence.
        await room_guarded(self.room.enter(), doing="take a connection in")
        if settings.CHAT_PRESENCE:
            # Beats while the owner has presence off too: a switch this socket missed is read
            # there (RoomConnection.beat).
            self.room_beat = asyncio.create_task(self._beat(self.room))

    async def _beat(self, room: RoomConnection) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await room.beat()
            except Exception:
                logger.warning("A room heartbeat failed", exc_info=True)

    async def leave_room(self) -> None:
        room, self.room = getattr(self, "room", None), None
        beat, self.room_beat = getattr(self, "room_beat", None), None
        if beat is not None:
            beat.cancel()
        if room is not None:
            try:
                await room.leave()
            except Exception:
                logger.warning("Leaving a room failed", exc_info=True)

    async def room_typing(self, event: dict[str, Any]) -> None:
        if self.closing or event.get("user_id") == self.visitor.user.pk:
            return  # never shown to the typist (nor on their other tabs)
        if self.room is not None and await self.room.heard(event):
            await self.deliver(typing_fragment(event))

    async def room_presence(self, event: dict[str, Any]) -> None:
        if self.room is not None and await self.room.heard(event):
            await self.deliver(presence_fragment(event, viewer_id=self.visitor.user.pk))

    async def room_presence_switch(self, event: dict[str, Any]) -> None:
        """The owner turned presence off or on: the page is told (off: its chips and typing
        line go), and this socket follows (off: it sends and stores nothing more)."""
        if self.room is not None and await self.room.heard(event):
            await self.deliver(presence_switch_fragment(event))

    async def room_presence_refresh(self, event: dict[str, Any]) -> None:
        if self.room is not None and (present := await self.room.heard(event)):
            await self.deliver(presence_fragment(present, viewer_id=self.visitor.user.pk))

    async def room_reply(self, event: dict[str, Any]) -> None:
        """Another page's send: show its bubbles here and follow its reply from the stream."""
        if self.closing or event.get("origin") in (self.channel_name, self.page_origin):
            return
        if self.room is None or event.get("conversation") != self.room.conversation_id:
            return
        message_id = _small_int(event.get("assistant_id"))
        if message_id is None or message_id in self.readers or message_id in self.delivered:
            return
        try:
            html = await room_started_html(self.visitor, event)
        except Http404:
            return
        if not await self.deliver(html):
            return
        with contextlib.suppress(TooManyReaders):  # the page's watch then says so
            self._follow(message_id, 0)

    async def room_removed(self, event: dict[str, Any]) -> None:
        if self.visitor.user.pk not in event.get("user_ids", []):
            return
        if self.room is None or event.get("conversation") != self.room.conversation_id:
            return
        await self.deliver(removed_fragment())
        self.closing = True
        for reader in self.readers.values():
            reader.cancel()
        await self.leave_room()
        await self.close(code=CLOSE_REMOVED)

    def _max_frame_chars(self) -> int:
        # Room for the longest message and system prompt, JSON-escaped, plus the form's fields.
        return (
            8 * (settings.CHAT_MAX_MESSAGE_CHARS + settings.CHAT_MAX_SYSTEM_PROMPT_CHARS) + 16_384
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if text_data is not None and len(text_data) > self._max_frame_chars():
            await self.deliver(error_fragment("That message is far too long to send."))
            return
        try:
            frame = json.loads(text_data or "")
            if not isinstance(frame, dict):
                raise ValueError("frame is not an object")
        except RecursionError:
            # Valid JSON, absurdly nested: say so and keep the socket for the visitor's replies.
            await self.deliver(error_fragment("That message could not be read."))
            return
        except ValueError:
            await self.close(code=CLOSE_BAD_FRAME)
            return
        action = frame.get("action") or "send"
        try:
            if action == "send":
                await self.send_message(frame)
            elif action == "stop":
                await self.stop(frame)
            elif action == "watch":
                await self.watch(frame.get("message_id"), frame.get("after"))
            elif action == "join":
                await self.enter_room(
                    _text_field(frame, "conversation"), _text_field(frame, "client")
                )
            elif action == "typing":
                if (
                    self.room is not None
                    and _text_field(frame, "conversation") == self.room.conversation_id
                ):
                    await room_guarded(self.room.typing(), doing="relay typing")
            else:
                await self.deliver(error_fragment("That action is not known here."))
        except Http404:
            # The socket stays open: it also carries the visitor's other replies.
            await self.deliver(error_fragment("Not found."))
        except ChatInputError as exc:
            await self.deliver(error_fragment(exc.message))

    async def stop(self, frame: dict[str, Any]) -> None:
        """Stop a reply by its id, or the conversation's streaming reply. In a shared
        conversation a member stops only their own (the domain says no in words)."""
        if frame.get("message_id") not in (None, ""):
            message_pk = _small_int(frame.get("message_id"))
            if message_pk is None:
                raise Http404("No such reply.")
            await services.reply_stop(visitor=self.visitor, message_id=message_pk)
            return
        await services.reply_stop(
            visitor=self.visitor, conversation_id=_text_field(frame, "conversation")
        )

    async def send_message(self, frame: dict[str, Any]) -> None:
        started = await services.areply_start(
            visitor=self.visitor,
            conversation_id=_text_field(frame, "conversation") or None,
            text=_text_field(frame, "message"),
            model_choice=_text_field(frame, "model"),
            system_prompt=_text_field(frame, "system_prompt"),
            attachment_ids=_list_field(frame, "attachment"),
        )
        if not await self.deliver(await db_read(started_fragment, started)):
            return
        if started.created_conversation:
            await self.enter_room(str(started.conversation.pk))
        else:
            await announce_started(started, origin=self.channel_name)
        # Followed at once rather than when the page's `watch` arrives (it sends one for every
        # streaming reply it shows, and finds this one followed): the first token is not held
        # up by that round trip and its query.
        with contextlib.suppress(TooManyReaders):  # the page's watch then says so
            self._follow(started.assistant_message.pk, 0)

    def _watch_allowed(self) -> bool:
        now = time.monotonic()
        self.watch_times = [t for t in self.watch_times if now - t < 60]
        if len(self.watch_times) >= settings.CHAT_WATCH_RATE_PER_MINUTE:
            return False
        self.watch_times.append(now)
        return True

    async def watch(self, message_id: Any, after: Any) -> None:
        if not self._watch_allowed():
            raise ChatInputError("Too many requests on this connection. Reload the page.")
        message_pk = _small_int(message_id)
        if message_pk is None:
            raise Http404("No such reply.")
        # A reply this socket follows or has finished sending was this visitor's when it did:
        # nothing to check or do (the page watches every streaming reply it shows, including
        # the one this socket follows since its send).
        if self.delivered.get(message_pk) == -1:
            return  # its final fragment already went out on this socket
        running = self.readers.get(message_pk)
        if running is not None and not running.done():
            return  # already followed from where this socket is
        message = await db_read(message_get, self.visitor, message_pk)
        delivered = self.delivered.get(message.pk)
        self._follow(message.pk, max(_small_int(after) or 0, delivered or 0))

    def _follow(self, message_id: int, offset: int) -> None:
        """Read the reply from `offset` to its end on its own task (raises TooManyReaders)."""
        slot = reader_acquire(self.visitor)
        if previous := self.readers.pop(message_id, None):
            previous.cancel()
        self.readers[message_id] = asyncio.create_task(self.forward(message_id, offset, slot))

    def _remember(self, message_id: int, seq: int) -> None:
        self.delivered[message_id] = seq
        self.delivered.move_to_end(message_id)
        while len(self.delivered) > REMEMBERED_REPLIES:
            self.delivered.popitem(last=False)

    async def deliver(self, html: str) -> bool:
        """Send a frame unless the client has stopped reading; then drop the connection."""
        if self.closing:
            return False
        buffered = self.scope.get("chatsite.buffered")
        if buffered is not None and buffered() > settings.CHAT_MAX_CONNECTION_BUFFER_BYTES:
            logger.info("Dropping a WebSocket that does not read (%s bytes unsent)", buffered())
            self.closing = True
            for reader in self.readers.values():
                if reader is not asyncio.current_task():
                    reader.cancel()
            await self.close(code=CLOSE_TOO_SLOW)
            return False
        try:
            await self.send(text_data=html)
        except SEND_ON_CLOSED_ERRORS:
            # The client has just closed; its disconnect follows, and `disconnect` cleans up.
            # Raised from here, it ended the consumer without that: a room member stayed
            # "here" for good, their heartbeat beating on.
            self.closing = True
            return False
        return True

    async def forward(self, message_id: int, after: int, slot: ReaderSlot) -> None:
        try:
            async for update in metrics.reading("ws", reply_updates(message_id, after=after)):
                if update is None:
                    continue
                # Remembered before the send: a reader replaced while its send is under way
                # must not leave the next one to send the same fragment again.
                self._remember(message_id, -1 if update.final else update.seq)
                if not await self.deliver(update.html):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Forwarding reply %s failed", message_id)
        finally:
            slot.release()
            if self.readers.get(message_id) is asyncio.current_task():
                with contextlib.suppress(KeyError):
                    del self.readers[message_id]
