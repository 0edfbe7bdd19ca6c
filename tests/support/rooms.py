"""A shared conversation served by two Daphne workers on one Redis, for the browser tests of
rooms: the owner's page on one worker, the member's on the other."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import app_env, daphne, manage_shell, migrate

# Owner, member and outsider sessions and two shared conversations (one for the removal), made
# in the workers' database through the sharing domain (the owner's invite link, the member
# joining by it).
SETUP = """
import base64
import json
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
cy = U.objects.create_user("cy", password="x", first_name="Cy", last_name="Cole")
def shared(title):
    c = Conversation.objects.create(user=ana, provider="demo", model="demo", title=title)
    invite = sharing.invite_create(visitor=Visitor(user=ana, visitor_id=""), conversation_id=c.pk)
    sharing.invite_join(visitor=Visitor(user=bo, visitor_id=""), token=invite.token)
    return str(c.pk)
print(json.dumps({"owner": session(ana), "member": session(bo), "outsider": session(cy),
                  "conversation": shared("Trip plans"), "removal_ws": shared("Weekend in Porto"),
                  "removal_sse": shared("Day trip to Sintra")}))
"""


@contextlib.contextmanager
def room_on_two_workers(data: Path, redis_url: str, **settings: str) -> Iterator[dict[str, Any]]:
    """Ana (Ana Lima) shares "Trip plans" (and two more conversations, for removals) with Bo
    (Bo Berg); Cy (Cy Cole) is signed in but no member. {"owner": (her worker's URL, her session
    key), "member": (his, on the other worker), "outsider": (Cy's, on hers), "conversation",
    "removal_ws", "removal_sse": the conversations' ids}."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = app_env(data, REDIS_URL=redis_url, **settings)
    migrate(env)
    made = json.loads(
        manage_shell(env, SETUP).splitlines()[-1]
    )  # after the shell's "objects imported" line
    with daphne(env, data / "one.log") as one, daphne(env, data / "two.log") as two:
        # The outsider's cookie is sent to both workers (cookies do not tell ports apart).
        yield {
            "owner": (one, made["owner"]),
            "member": (two, made["member"]),
            "outsider": (one, made["outsider"]),
            "conversation": made["conversation"],
            "removal_ws": made["removal_ws"],
            "removal_sse": made["removal_sse"],
        }
