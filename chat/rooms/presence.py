"""Who is here: each open connection of a member to a room is an entry that expires unless
its connection beats. In Redis with REDIS_URL (a sorted set per room, scored by expiry), so it
survives a dead worker: its entries just expire; in this process's memory otherwise.

A connection that closes is not removed at once: its entry lingers LEAVE_DEBOUNCE_SECONDS, so a
flapping connection (a reload, a network blip, hx-ws reconnecting) comes back before anyone is
told "left", and its return is no "joined" either.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

# A live connection refreshes its entry this often...
HEARTBEAT_SECONDS = 10.0
# ...and an entry not refreshed for this long is gone (its worker died).
ENTRY_TTL_SECONDS = 3 * HEARTBEAT_SECONDS
# "Left" is said only if the person is not back within this long.
LEAVE_DEBOUNCE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Present:
    user_id: int
    name: str


def _entry(user_id: int, connection: str, name: str) -> str:
    # The name last: it may contain anything, the id and the channel name may not contain "|".
    return f"{user_id}|{connection}|{name}"


def _parse(entry: str) -> tuple[int, str, str]:
    user_id, connection, name = entry.split("|", 2)
    return int(user_id), connection, name


def _people(entries: list[str]) -> list[Present]:
    seen: dict[int, Present] = {}
    for entry in entries:
        user_id, _, name = _parse(entry)
        seen.setdefault(user_id, Present(user_id, name))
    return list(seen.values())


class PresenceStore(Protocol):
    async def put(self, room: str, entry: str, *, expires: float) -> list[str]:
        """Add or refresh an entry; the room's live entries (expired ones dropped from them)."""

    async def expire(self, room: str, *, now: float) -> list[str]:
        """Remove the room's expired entries; those this call removed."""

    async def entries(self, room: str, *, now: float) -> list[str]: ...

    async def drop(self, room: str, entry: str) -> None:
        """Remove one entry at once (no linger)."""

    async def clear(self, room: str) -> None:
        """Remove every entry of the room."""


class MemoryPresence:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, float]] = {}

    async def put(self, room: str, entry: str, *, expires: float) -> list[str]:
        entries = self.rooms.setdefault(room, {})
        entries[entry] = expires
        return await self.entries(room, now=time.time())

    async def expire(self, room: str, *, now: float) -> list[str]:
        entries = self.rooms.get(room, {})
        gone = [entry for entry, expires in entries.items() if expires <= now]
        for entry in gone:
            del entries[entry]
        if not entries:
            self.rooms.pop(room, None)
        return gone

    async def entries(self, room: str, *, now: float) -> list[str]:
        return [e for e, expires in self.rooms.get(room, {}).items() if expires > now]

    async def drop(self, room: str, entry: str) -> None:
        entries = self.rooms.get(room, {})
        entries.pop(entry, None)
        if not entries:
            self.rooms.pop(room, None)

    async def clear(self, room: str) -> None:
        self.rooms.pop(room, None)


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        from chat.rooms.layer import redis_retry

        self.redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=10,
            retry=redis_retry(),
        )

    @staticmethod
    def key(room: str) -> str:
        return f"chat:presence:{room}"

    async def put(self, room: str, entry: str, *, expires: float) -> list[str]:
        key = self.key(room)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {entry: expires})
            # The room's key outlives its last entry a little, then goes: no room lingers.
            pipe.expire(key, int(ENTRY_TTL_SECONDS * 2))
            pipe.zrangebyscore(key, f"({time.time()}", "+inf")
            results = await pipe.execute()
        return [str(e) for e in results[-1]]

    async def expire(self, room: str, *, now: float) -> list[str]:
        key = self.key(room)
        candidates = [str(e) for e in await self.redis.zrangebyscore(key, "-inf", now)]
        gone = []
        for entry in candidates:
            # Removed only if it is still expired (a heartbeat may have just refreshed it), and
            # reported by whichever worker removed it: each leave is announced once.
            removed = await self.redis.eval(
                "local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) "
                "if s and tonumber(s) <= tonumber(ARGV[2]) then "
                "return redis.call('ZREM', KEYS[1], ARGV[1]) end return 0",
                1,
                key,
                entry,
                str(now),
            )
            if removed:
                gone.append(entry)
        return gone

    async def entries(self, room: str, *, now: float) -> list[str]:
        return [str(e) for e in await self.redis.zrangebyscore(self.key(room), f"({now}", "+inf")]

    async def drop(self, room: str, entry: str) -> None:
        await self.redis.zrem(self.key(room), entry)

    async def clear(self, room: str) -> None:
        await self.redis.delete(self.key(room))


_memory = MemoryPresence()
# Redis clients belong to the event loop they were made on.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RedisPresence]] = (
    weakref.WeakKeyDictionary()
)


def presence_store() -> PresenceStore:
    if not settings.REDIS_URL:
        return _memory
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if settings.REDIS_URL not in per_loop:
        per_loop[settings.REDIS_URL] = RedisPresence(settings.REDIS_URL)
    return per_loop[settings.REDIS_URL]


def presence_forget() -> None:
    """Tests: start with nobody here."""
    _memory.rooms.clear()


@dataclass(frozen=True, slots=True)
class Change:
    present: list[Present]
    joined: Present | None = None
    left: list[Present] | None = None


async def presence_join(room: str, *, user_id: int, name: str, connection: str) -> Change:
    """A connection of `user_id` is here (or beats). `joined` is set when the person was not
    here through any other connection (nor lingering after a blip)."""
    entry = _entry(user_id, connection, name)
    now = time.time()
    store = presence_store()
    before = await store.entries(room, now=now)
    live = await store.put(room, entry, expires=now + ENTRY_TTL_SECONDS)
    was_here = any(_parse(e)[0] == user_id for e in before if e != entry)
    already = entry in before
    joined = None if (was_here or already) else Present(user_id, name)
    return Change(_people(live), joined=joined)


async def presence_linger(room: str, *, user_id: int, name: str, connection: str) -> None:
    """The connection closed: its entry stays LEAVE_DEBOUNCE_SECONDS, then expires."""
    await presence_store().put(
        room, _entry(user_id, connection, name), expires=time.time() + LEAVE_DEBOUNCE_SECONDS
    )


async def presence_drop(room: str, *, user_id: int, name: str, connection: str) -> None:
    """The connection's entry goes at once, unannounced (the owner turned presence off)."""
    await presence_store().drop(room, _entry(user_id, connection, name))


async def presence_clear(room: str) -> None:
    """Nobody is here any more, as far as the store knows: every entry of the room goes, those
    of connections on other workers and of workers that died included (presence turned off)."""
    await presence_store().clear(room)


async def presence_sweep(room: str) -> Change | None:
    """Drop the room's expired entries; who is now gone altogether (None: nobody)."""
    now = time.time()
    store = presence_store()
    gone = await store.expire(room, now=now)
    if not gone:
        return None
    live = await store.entries(room, now=now)
    still_here = {_parse(e)[0] for e in live}
    left = [p for p in _people(gone) if p.user_id not in still_here]
    if not left:
        return None
    return Change(_people(live), left=left)


async def presence_list(room: str) -> list[Present]:
    return _people(await presence_store().entries(room, now=time.time()))


def presence_on(conversation: Any) -> bool:
    """Whether who-is-here and typing are sent and stored for this conversation at all."""
    return bool(settings.CHAT_PRESENCE and getattr(conversation, "presence_enabled", True))


def present_as_lists(people: list[Present]) -> list[list[Any]]:
    # What goes through the layer: plain lists (channels-redis serialises with msgpack).
    return [[p.user_id, p.name] for p in people]


def present_from_lists(rows: Any) -> list[Present]:
    return [Present(int(row[0]), str(row[1])) for row in rows or []]
