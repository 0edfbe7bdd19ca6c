"""The child process that reads one upload: `python -m chat.attachments.child '<json job>'`.

It limits its own address space (RLIMIT_AS) and CPU time before importing any decoder, reads the
file at `input`, writes what is to be stored to `outdir` ("stored", and "thumbnail" for images)
and prints one JSON object: the result, or {"refused": "<why, in words>"}. The parent
(`chat.attachments.processing`) also kills it at the wall-clock limit.
"""

from __future__ import annotations

import json
import resource
import sys
import zipfile
from pathlib import Path
from typing import Any

from chat.attachments.errors import AttachmentRefused
from chat.attachments.sniff import IMAGE_TYPES, sniff


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))


def _zip_names(path: Path) -> frozenset[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return frozenset(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return None


def process(job: dict[str, Any]) -> dict[str, Any]:
    source = Path(job["input"])
    outdir = Path(job["outdir"])
    with source.open("rb") as file:
        head = file.read(8192)
    found = sniff(head, zip_names=_zip_names(source) if head.startswith(b"PK") else None)
    if found.format.startswith("image:"):
        from chat.attachments.images import image_process

        image_format = found.format.removeprefix("image:")
        image = image_process(
            source,
            expected_format=image_format,
            max_side=job["max_side"],
            max_pixels=job["max_pixels"],
        )
        (outdir / "stored").write_bytes(image.data)
        (outdir / "thumbnail").write_bytes(image.thumbnail)
        return {
            "kind": "image",
            "content_type": image.content_type,
            "extension": image.extension,
            "width": image.width,
            "height": image.height,
            "source_type": IMAGE_TYPES[image_format],
        }
    from chat.attachments import documents

    extract = {
        "pdf": documents.pdf_extract,
        "docx": documents.docx_extract,
        "text": documents.text_extract,
    }[found.format]
    extracted = extract(source, max_chars=job["max_chars"])
    return {
        "kind": "document",
        "content_type": extracted.content_type,
        "extension": extracted.extension,
        "text": extracted.text,
        "included": extracted.included,
    }


def main() -> None:
    job = json.loads(sys.argv[1])
    _limit(job.get("memory_bytes", 0), job.get("cpu_seconds", 0))
    try:
        result = process(job)
    except AttachmentRefused as refused:
        result = {"refused": refused.message}
    except MemoryError:
        result = {"refused": "too_much_memory"}
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
