"""`settings.MIDDLEWARE` that counts a subclass as the middleware it extends.

Django's deploy checks ask whether a middleware is installed by its dotted path:
`"django.middleware.security.SecurityMiddleware" in settings.MIDDLEWARE`. The list holds
Django's middleware adapted for Daphne (chatsite/serving/inline_middleware.py) under other
paths, so the checks reported the security, CSRF, session and clickjacking middleware missing
(security.W001, W002, W003, W010) and skipped every check that depends on them: HSTS, the SSL
redirect, Secure cookies. Django's admin checks already count subclasses as installed
(`django.contrib.admin.checks._contains_subclass`); this list answers `in` the same way, so every
check of Django's (and of any app) sees the middleware that really runs. Nothing else changes:
it is a list of strings, iterated as given.
"""

from __future__ import annotations

from django.utils.module_loading import import_string


def _class_at(path: str) -> type | None:
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


class MiddlewareList(list[str]):
    def __contains__(self, path: object) -> bool:
        if super().__contains__(path):
            return True
        if not isinstance(path, str):
            return False
        # Imported only when asked (by a check, once apps are loaded), never when settings load.
        wanted = _class_at(path)
        if wanted is None:
            return False
        return any(
            (entry := _class_at(installed)) is not None and issubclass(entry, wanted)
            for installed in self
        )
