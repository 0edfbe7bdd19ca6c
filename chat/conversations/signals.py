"""Signals of the sharing domain, sent after the transaction that caused them commits.

The live part of a room (chat/rooms/receivers.py) connects receivers that close the removed
people's sockets and end their event streams, and that tell every page of a room that its owner
turned presence off or on — on every worker.
"""

from __future__ import annotations

import django.dispatch

# A member was removed by the owner: `conversation_id` (UUID), `user_id`.
member_removed = django.dispatch.Signal()
# The owner stopped sharing (the invite turned off, every member removed): `conversation_id`,
# `user_ids` (the members removed).
sharing_stopped = django.dispatch.Signal()
# The owner turned who-is-here and typing off or on for the conversation: `conversation_id`,
# `enabled`. Sent only when the flag changed.
presence_switched = django.dispatch.Signal()
