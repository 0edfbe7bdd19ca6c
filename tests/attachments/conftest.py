from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """Attachments stored in this test's own folder; uploads unlimited unless a test says."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHAT_UPLOAD_RATE_LIMIT = ""
    settings.CHAT_UPLOAD_IP_RATE_LIMIT = ""
    return settings.MEDIA_ROOT
