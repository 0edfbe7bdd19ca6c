"""`collectstatic`, skipped when no source file changed since the last collection.

Hashing and compressing every static file (brotli and gzip, the admin's included) takes tens of
seconds of CPU; a production restart (`make run-prod`, a container restarted after a crash)
should not pay it again for the same files. The fingerprint covers every file the finders see
(path, size, modification time) and the storage in use; it is written only after a collection
succeeded, next to the manifest.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.core.management.base import BaseCommand

FINGERPRINT_FILE = ".sources-fingerprint"


def sources_fingerprint() -> str:
    digest = hashlib.sha256(settings.STORAGES["staticfiles"]["BACKEND"].encode())
    entries = []
    for finder in finders.get_finders():
        for path, storage in finder.list(None):
            stat = os.stat(storage.path(path))
            entries.append(
                f"{getattr(storage, 'prefix', '') or ''}/{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
            )
    for entry in sorted(entries):
        digest.update(entry.encode() + b"\n")
    return digest.hexdigest()


class Command(BaseCommand):
    help = "Run collectstatic unless the static sources are unchanged since the last run."

    def handle(self, *args: Any, **options: Any) -> None:
        stamp = settings.STATIC_ROOT / FINGERPRINT_FILE
        manifest = settings.STATIC_ROOT / "staticfiles.json"
        fingerprint = sources_fingerprint()
        if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
            self.stdout.write("Static files are up to date.")
            return
        stamp.unlink(missing_ok=True)
        call_command("collectstatic", interactive=False, verbosity=0)
        stamp.write_text(fingerprint)
        self.stdout.write("Static files collected.")
