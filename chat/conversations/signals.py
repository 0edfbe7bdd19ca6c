"""What sharing tells the rest of the site. Both are sent once the change is committed."""

from __future__ import annotations

from django.dispatch import Signal

# A member was taken out of a conversation: kwargs `conversation_id`, `user_id`.
member_removed = Signal()
# The owner stopped sharing a conversation: kwargs `conversation_id`, `user_ids` (every member).
sharing_stopped = Signal()
