"""The admin: conversation review (`conversations`), prices and spending caps (`money`), the
usage analytics page (`analytics`) and API keys (`api_keys`)."""

from chat.admin import analytics, api_keys, conversations, money

__all__ = ["analytics", "api_keys", "conversations", "money"]
