"""The one rule for async code and the database (docs/architecture.md): async code in the app
reaches it through chat.db (db_read, db_write) only. Ruff's banned-API rule refuses
`sync_to_async` and `database_sync_to_async` imports; this refuses Django's async ORM calls."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Django's async ORM: QuerySet's and Model's a-prefixed methods.
ASYNC_ORM = {
    "aaggregate", "abulk_create", "abulk_update", "acontains", "acount", "acreate", "adelete",
    "aearliest", "aexists", "aexplain", "afirst", "aget", "aget_or_create", "ain_bulk",
    "aiterator", "alast", "alatest", "arefresh_from_db", "asave", "aupdate",
    "aupdate_or_create",
}  # fmt: skip


def _async_orm_calls(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Await)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in ASYNC_ORM
        ):
            found.append((node.lineno, node.value.func.attr))
    return found


def test_the_app_never_calls_the_async_orm():
    calls = {
        f"{path.relative_to(REPO)}:{line} {name}"
        for path in (REPO / "chat").rglob("*.py")
        if "migrations" not in path.parts
        for line, name in _async_orm_calls(path.read_text())
    }
    assert sorted(calls) == []


def test_the_check_finds_an_async_orm_call():
    assert _async_orm_calls("async def f():\n    await Message.objects.filter(pk=1).aexists()") == [
        (2, "aexists")
    ]
