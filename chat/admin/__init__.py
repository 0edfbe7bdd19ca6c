"""The admin: conversation review (`conversations`), prices and spending caps (`money`), and the
usage analytics page (`analytics`)."""

from chat.admin import analytics, conversations, money

__all__ = ["analytics", "conversations", "money"]
