"""Reading an upload off the event loop: a child process per file, with a wall-clock limit, a
memory limit (RLIMIT_AS) and a CPU limit, so a hostile PDF or image costs at most that and never
the worker that streams replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from chat.attachments.errors import AttachmentRefused
from chat.providers.base import CHARS_PER_TOKEN

logger = logging.getLogger(__name__)

# A few children at once per worker: reading files is CPU work that must not crowd out the
# replies this worker streams. (One semaphore per event loop: tests run several loops.)
CHILDREN_AT_ONCE = 2
_children: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _children_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _children:
        _children[loop] = asyncio.Semaphore(CHILDREN_AT_ONCE)
    return _children[loop]


@dataclass(frozen=True)
class Processed:
    kind: str
    content_type: str
    extension: str
    stored: bytes
    thumbnail: bytes = b""
    width: int | None = None
    height: int | None = None
    text: str = ""
    included: str = ""


def _job(source: Path, outdir: Path) -> dict[str, object]:
    return {
        "input": str(source),
        "outdir": str(outdir),
        "max_side": settings.CHAT_IMAGE_MAX_SIDE,
        "max_pixels": settings.CHAT_IMAGE_MAX_PIXELS,
        "max_chars": settings.CHAT_ATTACHMENT_MAX_TOKENS * CHARS_PER_TOKEN,
        "memory_bytes": settings.CHAT_ATTACHMENT_MEMORY_MB * 1024 * 1024,
        "cpu_seconds": max(1, int(settings.CHAT_ATTACHMENT_TIMEOUT_SECONDS) + 1),
    }


def _kill(child: asyncio.subprocess.Process) -> None:
    # It may have ended on its own a moment ago.
    with contextlib.suppress(ProcessLookupError):
        child.kill()


async def _run_child(job: dict[str, object]) -> dict[str, object]:
    timeout = settings.CHAT_ATTACHMENT_TIMEOUT_SECONDS
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat.attachments.child",
        json.dumps(job),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(child.communicate(), timeout)
    except TimeoutError:
        _kill(child)
        await child.wait()
        raise AttachmentRefused(
            f"This file took longer than {timeout:g} seconds to read, so it was not attached. "
            "Try a smaller file, or a part of it."
        ) from None
    except asyncio.CancelledError:
        _kill(child)
        await child.wait()
        raise
    try:
        result: dict[str, object] = json.loads(stdout)
    except ValueError:
        result = {}
    if not result:
        # Killed by its limits (MemoryError past the point of reporting it, SIGXCPU) or crashed.
        logger.warning(
            "An attachment's reader ended with %s: %s", child.returncode, stderr[-2000:].decode()
        )
        result = {"refused": "too_much_memory" if child.returncode != 0 else ""}
    if "refused" in result:
        reason = str(result["refused"])
        if reason in ("too_much_memory", ""):
            reason = (
                "This file needs more memory to read than chatsite allows, so it was not "
                "attached. Try a smaller file, or a part of it."
            )
        raise AttachmentRefused(reason)
    return result


async def attachment_process(data: bytes) -> Processed:
    """Decide what `data` is and make what is kept of it, in a limited child process; or raise
    AttachmentRefused saying why not."""
    if not data:
        raise AttachmentRefused("The file is empty.")
    with tempfile.TemporaryDirectory(prefix="chatsite-upload-") as workdir:
        source = Path(workdir) / "upload"
        source.write_bytes(data)
        async with _children_slots():
            result = await _run_child(_job(source, Path(workdir)))
        stored_path = Path(workdir) / "stored"
        thumbnail_path = Path(workdir) / "thumbnail"
        stored = stored_path.read_bytes() if stored_path.exists() else data
        thumbnail = thumbnail_path.read_bytes() if thumbnail_path.exists() else b""
    width, height = result.get("width"), result.get("height")
    return Processed(
        kind=str(result["kind"]),
        content_type=str(result["content_type"]),
        extension=str(result["extension"]),
        stored=stored,
        thumbnail=thumbnail,
        width=int(width) if isinstance(width, int) else None,
        height=int(height) if isinstance(height, int) else None,
        text=str(result.get("text", "")),
        included=str(result.get("included", "")),
    )
