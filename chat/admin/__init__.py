"""The admin: conversation review (`conversations`), prices and spending caps (`money`), the
usage analytics page (`analytics`) and API keys (`api_keys`); `sign_in` hides the sign-in
library's entries without single sign-on (called from `ChatConfig.ready()`)."""

from chat.admin import analytics, api_keys, conversations, money

__all__ = ["analytics", "api_keys", "conversations", "money"]
