"""Reading attachments: pypdfium2 against pypdf on a 300-page PDF, and the whole child-process
path (chat.attachments.child) for that PDF and a 12-megapixel photo.

    .venv/bin/python -m benchmarks.attachments             # 3 runs each, medians
    .venv/bin/python -m benchmarks.attachments --runs 5

Each measurement runs in a fresh process, so its peak RSS (ru_maxrss of the finished child) is
that reader's alone, interpreter and imports included. The files are made on the spot
(tests/support/attachment_files.py): 300 pages of about 2,000 characters each, and a 4000 × 3000
JPEG with GPS in its EXIF.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import attachment_files

# Each reader extracts every page's text, as chatsite would without a cap.
_PYPDFIUM2 = """
import sys, pypdfium2
pdf = pypdfium2.PdfDocument(sys.argv[1])
chars = 0
for index in range(len(pdf)):
    page = pdf[index]
    textpage = page.get_textpage()
    chars += len(textpage.get_text_bounded())
    textpage.close()
    page.close()
print(chars)
"""
_PYPDF = """
import sys, pypdf
reader = pypdf.PdfReader(sys.argv[1])
print(sum(len(page.extract_text()) for page in reader.pages))
"""


def _child_job(source: Path, outdir: Path) -> list[str]:
    job = {
        "input": str(source),
        "outdir": str(outdir),
        "max_side": 2048,
        "max_pixels": 50_000_000,
        "max_chars": 80_000,
        "memory_bytes": 1024 * 1024 * 1024,
        "cpu_seconds": 31,
    }
    return [sys.executable, "-m", "chat.attachments.child", json.dumps(job)]


def _peak_mb(argv: list[str]) -> tuple[float, float]:
    """Wall ms and the process's own peak RSS, read by a wrapper so runs do not mix."""
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "ms = (time.perf_counter() - t) * 1000\n"
        "print(json.dumps([ms, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))\n"
    )
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", wrapper, *argv], capture_output=True, check=True, text=True
    )
    ms, mb = json.loads(out.stdout)
    return ms, mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatsite-bench-") as workdir:
        folder = Path(workdir)
        pdf = folder / "300-pages.pdf"
        pdf.write_bytes(attachment_files.long_pdf(300))
        photo = folder / "photo.jpg"
        photo.write_bytes(attachment_files.photo_with_gps())
        cases = {
            "pypdfium2, 300 pages, all text": [sys.executable, "-c", _PYPDFIUM2, str(pdf)],
            "pypdf, 300 pages, all text": [sys.executable, "-c", _PYPDF, str(pdf)],
            "chatsite child, 300-page PDF (capped)": _child_job(pdf, folder),
            "chatsite child, 12-megapixel JPEG": _child_job(photo, folder),
        }
        print(f"PDF {pdf.stat().st_size / 1e6:.2f} MB, photo {photo.stat().st_size / 1e6:.2f} MB")
        print(f"{'case':<42} {'median ms':>10} {'peak RSS MB':>12}")
        for name, argv in cases.items():
            runs = [_peak_mb(argv) for _ in range(args.runs)]
            ms = statistics.median(run[0] for run in runs)
            mb = statistics.median(run[1] for run in runs)
            print(f"{name:<42} {ms:>10,.0f} {mb:>12,.0f}")


if __name__ == "__main__":
    main()
