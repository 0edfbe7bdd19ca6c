"""A shared conversation served by two Daphne workers on one Redis, for the browser tests of
rooms: the owner's page on one worker, the member's on the other."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import REPO, app_env, daphne, migrate

# Owner and member sessions and a shared conversation, made in the workers' database through
# the sharing domain (the owner's invite link, the member joining by it).
SETUP = """
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from chat.conversations import sharing
from chat.conversations.reads import Visitor
from chat.models import Conversation
U = get_user_model()
def session(user):
    s = SessionStore(); s[SESSION_KEY] = str(user.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = user.get_session_auth_hash(); s.create(); return s.session_key
ana = U.objects.create_user("ana", password="x", first_name="Ana", last_name="Lima")
bo = U.objects.create_user("bo", password="x", first_name="Bo", last_name="Berg")
c = Conversation.objects.create(user=ana, provider="demo", model="demo", title="Trip plans")
invite = sharing.invite_create(visitor=Visitor(user=ana, visitor_id=""), conversation_id=c.pk)
sharing.invite_join(visitor=Visitor(user=bo, visitor_id=""), token=invite.token)
print(session(ana), session(bo), c.pk)
"""


@contextlib.contextmanager
def room_on_two_workers(data: Path, redis_url: str, **settings: str) -> Iterator[dict[str, Any]]:
    """Ana (Ana Lima) shares "Trip plans" with Bo (Bo Berg): {"owner": (her worker's URL, her
    session key), "member": (his), "conversation": its id}."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = app_env(data, REDIS_URL=redis_url, **settings)
    migrate(env)
    out = (
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
        .split()
    )  # after the shell's "objects imported" line
    with daphne(env, data / "one.log") as one, daphne(env, data / "two.log") as two:
        yield {"owner": (one, out[0]), "member": (two, out[1]), "conversation": out[2]}
