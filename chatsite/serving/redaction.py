"""Credentials out of logged URLs: what the access log writes is the URL with them redacted.

A client may put a key in a query string (`?api_key=…`: refused, the API reads keys only from the
Authorization header, but the URL was logged as sent) and the site itself puts one-time secrets
in URLs: the OpenID Connect callback's `code` and `state`, and the password-reset link's token.
Headers never reach the access log (Daphne writes the method, the URL, the status and the size),
so the URL is all there is to redact.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

# A parameter whose name says it carries a secret, as the app decodes it (case, `-` or `_`):
# api_key, apikey, key, access_token, id_token, password, client_secret, sessionid, code, …
_SECRET_NAME = re.compile(
    r"(?:^|[_\-.])(?:api[_\-]?key|key|keys|token|tokens|secret|password|passwd|pwd|auth|"
    r"authorization|bearer|credentials?|signature|sig|session|sessionid|code|state|otp)$"
    r"|(?:api[_\-]?key|token|secret|password|passwd|session)",
    re.IGNORECASE,
)
# A value that is a credential whatever its name: one of our API keys, or a bearer token.
_SECRET_VALUE = re.compile(r"^(?:csk-|bearer[\s+])|csk-[A-Za-z0-9_-]{8,}", re.IGNORECASE)
# The password-reset link: /accounts/reset/<uidb64>/<token>/ (Django swaps the token for
# "set-password" on its first visit, which is safe to log).
_RESET_TOKEN = re.compile(r"(/reset/[^/?]+/)(?!set-password/)[^/?]+(?=/)")


def _parameter_redact(parameter: str) -> str:
    name, _, value = parameter.partition("=")
    decoded_name, decoded_value = unquote_plus(name), unquote_plus(value)
    if _SECRET_NAME.search(decoded_name) or _SECRET_VALUE.search(decoded_value):
        return f"{name}={REDACTED}"
    return parameter


def url_redact(url: str) -> str:
    """`url` (a path with its query string) with every credential's value replaced."""
    path, question, query = url.partition("?")
    path = _RESET_TOKEN.sub(rf"\g<1>{REDACTED}", path)
    if not question:
        return path
    return f"{path}?" + "&".join(_parameter_redact(p) for p in query.split("&"))
