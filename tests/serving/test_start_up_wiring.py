"""What a serving process wires at start-up, checked in a process that imports only what
production imports: `django.setup()`, `chatsite.asgi` and the URLconf a first request loads. A
test that passes because the test process imported a module proves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Modules a serving process does not import, and why. Anything else it does not import is
# code that only tests reach: wiring that silently never happens (this once hid the sign-in
# receivers), or dead code.
NOT_SERVED = {
    "chat.attachments.child": "run as its own process (python -m) for each upload",
    "chat.attachments.documents": "imported by that child process",
    "chat.attachments.images": "imported by that child process",
    "chat.attachments.sniff": "imported by that child process",
    "chat.management": "manage.py's commands",
    "chat.management.commands": "manage.py's commands",
    "chat.management.commands.collectstatic_cached": "a manage.py command",
    "chat.management.commands.create_api_key": "a manage.py command",
    "chat.management.commands.reap_replies": "a manage.py command",
    "chat.management.commands.rollup_usage": "a manage.py command",
    "chat.management.commands.seed_usage": "a manage.py command",
    "chat.management.commands.sweep_attachments": "a manage.py command",
    "chat.management.seeding": "the seed_usage command's data",
    "chat.providers.anthropic": "imported when ANTHROPIC_API_KEY is set",
    "chat.providers.demo": "imported by the first demo reply (it is small and offline)",
    "chat.providers.openai": "imported when OPENAI_API_KEY is set",
    "chat.providers.transport": "the SDK providers' HTTP transport",
    "chat.rooms.redis_layer": "the channel layer with REDIS_URL (Channels loads it on first use)",
    "chat.templatetags": "loaded by the first template that uses its tags",
    "chat.templatetags.chat_tags": "loaded by the first template that uses it",
}

_PROBE = """
import json, sys
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
import chatsite.asgi  # noqa: F401  (sets Django up, as Daphne does)
from django.urls import get_resolver
get_resolver().url_patterns  # the URLconf, as the first request loads it
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save
from chat.models import Attachment
from chat.conversations.signals import member_removed, presence_switched, sharing_stopped
def receivers(signal):
    return sorted(f"{r.__module__}.{r.__qualname__}" for r in signal._live_receivers(None)[0])
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m == "chat" or m.startswith("chat.")),
    "user_logged_in": receivers(user_logged_in),
    "user_logged_out": receivers(user_logged_out),
    "member_removed": receivers(member_removed),
    "sharing_stopped": receivers(sharing_stopped),
    "presence_switched": receivers(presence_switched),
    "attachment_deleted": sorted(
        f"{r.__module__}.{r.__qualname__}" for r in post_delete._live_receivers(Attachment)[0]
    ),
}))
"""


def _serving_process() -> dict[str, list[str]]:
    env = {"PATH": "/usr/bin:/bin", "CHATSITE_DATA_DIR": str(REPO / "var")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_a_serving_process_has_every_receiver_the_app_defines():
    served = _serving_process()
    assert "chat.web.receivers.claim_anonymous_conversations" in served["user_logged_in"]
    assert "chat.web.receivers.forget_visitor_at_logout" in served["user_logged_out"]
    # A removal closes the removed person's sockets and streams, on every worker.
    assert "chat.rooms.receivers.on_member_removed" in served["member_removed"]
    assert "chat.rooms.receivers.on_sharing_stopped" in served["sharing_stopped"]
    # The owner's presence switch reaches every page of the room, on every worker.
    assert "chat.rooms.receivers.on_presence_switched" in served["presence_switched"]
    # A deleted attachment row (swept, or purged with its conversation) takes its files.
    assert "chat.attachments.receivers._files_delete" in served["attachment_deleted"]


def test_a_serving_process_imports_every_module_of_the_app():
    # From the files, not by importing them (which would import what is being looked for).
    every = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "chat").rglob("*.py")
        if "migrations" not in path.parts
    }
    served = set(_serving_process()["modules"])
    assert sorted(every - served - set(NOT_SERVED)) == []
    # The list of exceptions stays true.
    assert sorted(set(NOT_SERVED) - every) == []


def test_the_serving_launcher_turns_off_twisteds_parse_of_form_bodies():
    """What `python -m chatsite.serving.server` imports leaves Twisted's parse of a POST's form
    body off: it held the event loop 0.2-0.3 s for each 10 MB upload (Daphne never reads it)."""
    probe = (
        "import chatsite.serving.daphne_server\n"
        "from daphne.http_protocol import WebRequest\n"
        "request = WebRequest.__new__(WebRequest)\n"
        "request._parsePOSTFormSubmission = True  # what Twisted's __init__ sets\n"
        "print(request._parsePOSTFormSubmission)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False"]
