"""The one rule for async code and the database (docs/architecture.md, "Async code and the
database"): async code never calls the ORM, `sync_to_async` or `database_sync_to_async` itself.

- `db_read(function, *args)` runs a sync function that reads on one of a few long-lived database
  threads, which keep their connections (chat/db/threads.py).
- `db_write(function, *args)` runs a sync function that writes — a transaction of its own — on
  the one writer thread, in the order the writes came (chat/db/writer.py). On SQLite writers
  exclude each other, and one writer that never meets another beats many that wait; live
  replies' progress is saved there too, all of them in one transaction per interval.
  (`db_write_blocking` is the same door for the rare sync view that must write: the page that
  finds a reply whose worker died asks the reaper through it.)

Ruff's banned-API rule (pyproject.toml) refuses `sync_to_async` outside this package, with two
documented exceptions.
"""

from __future__ import annotations

from chat.db.threads import db_read
from chat.db.writer import db_write, db_write_blocking, reply_progress_save

__all__ = ["db_read", "db_write", "db_write_blocking", "reply_progress_save"]
