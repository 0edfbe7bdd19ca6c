"""An attachment end to end, and what reading one does to a reply streaming on the same worker.

    .venv/bin/python -m benchmarks.attachment_load [--runs 3]

One chatsite worker (SQLite, the OpenAI provider pointed at the relay benchmark's stamping
upstream: 300 tokens at 20 a second, each stamped with the time it was sent) streams a reply to
an SSE reader. Three seconds in, the same visitor uploads a file through the real endpoint
(`POST /streaming-demo/attachments`): a 10 MB PDF (4,000 pages of text) or a 12-megapixel JPEG
of camera size (6 MB) with GPS in its EXIF, or nothing for the baseline. Reported, median over
`--runs`: the upload's wall time (the body sent, read in the child process, stored, answered),
the reader child's peak RSS (`benchmarks.attachments`' method: the same reader run alone), the
worker's RSS high-water mark, and the latency the server added to the reply's tokens (receive
time minus stamp) while the upload was in flight, p50 and p99, against the same window of a
reply with no upload.
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from benchmarks.attachments import _child_job, _peak_mb
from benchmarks.relay import servers
from tests.support import attachment_files
from tests.support.servers import Browser, read_event

STAMP = re.compile(r"t(\d+)@(\d+)")
TOKENS, RATE = 300, 20.0


def _camera_photo() -> bytes:
    """A 12-megapixel JPEG the size a phone's is (~5 MB: noise does not compress), with the GPS
    EXIF of the test suite's photo."""
    import io

    from PIL import Image

    exif = Image.open(io.BytesIO(attachment_files.photo_with_gps())).getexif()
    noise = Image.effect_noise((4000, 3000), 40).convert("RGB")
    out = io.BytesIO()
    noise.save(out, format="JPEG", exif=exif, quality=85)
    return out.getvalue()


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _upload(base: str, browser: Browser, name: str, data: bytes) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
    started = time.monotonic()
    connection.request(
        "POST",
        "/streaming-demo/attachments",
        body=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": cookies,
            "X-CSRFToken": browser.cookie("csrftoken"),
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, time.monotonic() - started


def _one(base: str, pid: int, case: str, files: dict[str, tuple[str, bytes]]) -> dict[str, float]:
    browser = Browser()
    browser.get(f"{base}/streaming-demo")
    _, html = browser.post(
        f"{base}/streaming-demo/messages",
        {"action": "send", "message": f"Benchmark {case}", "model": f"openai:{servers.MODEL}"},
    )
    found = re.search(r'data-status="streaming" data-message-id="(\d+)"', html)
    if not found:
        raise SystemExit(f"the send was refused: {html[:500]}")
    added: list[tuple[float, float]] = []  # (receive time, added ms)

    def read() -> None:
        host, port = urllib.parse.urlsplit(base).netloc.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
        connection.request(
            "GET", f"/streaming-demo/replies/{found[1]}/events", headers={"Cookie": cookies}
        )
        response = connection.getresponse()
        while True:
            data = read_event(response).get("data", "")
            now = time.monotonic_ns()
            if "<article" in data:
                break
            for _index, stamp in STAMP.findall(data):
                added.append((now / 1e9, (now - int(stamp)) / 1e6))
        connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(3)
    started = time.monotonic()
    status, seconds = 0, 2.0  # the baseline's window: as long as a typical upload
    if case in files:
        name, data = files[case]
        status, seconds = _upload(base, browser, name, data)
        if status != 201:
            raise SystemExit(f"{case}: the upload answered {status}")
    ended = started + seconds
    reader.join(TOKENS / RATE + 30)
    during = sorted(ms for when, ms in added if started <= when <= ended + 0.2)
    return {
        "upload_s": seconds if case in files else 0.0,
        "p50": statistics.median(during) if during else 0.0,
        "p99": during[int(len(during) * 0.99)] if during else 0.0,
        "tokens_during": len(during),
        "worker_hwm_mb": _vm_hwm_mb(pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-attachment-load-"))
    files = {
        "pdf_10mb": ("report.pdf", attachment_files.long_pdf(4000)),
        "photo_12mp": ("photo.jpg", _camera_photo()),
    }
    for case, (name, data) in files.items():
        source = workdir / name
        source.write_bytes(data)
        (workdir / case).mkdir()
        wall_ms, peak = _peak_mb(_child_job(source, workdir / case))
        print(  # noqa: T201
            f"{case}: {len(data) / 2**20:.1f} MiB; the reader alone {wall_ms:,.0f} ms, "
            f"peak RSS {peak:.0f} MB"
        )
    results: dict[str, list[dict[str, float]]] = {}
    with (
        servers.upstream(workdir, tokens=TOKENS, rate=RATE) as (upstream_port, _),
        servers.chatsite(workdir, upstream_port) as chatsite,
    ):
        base = f"http://127.0.0.1:{chatsite.ports[0]}"
        for _run in range(args.runs):
            for case in ("none", *files):
                results.setdefault(case, []).append(_one(base, chatsite.pids[0], case, files))
    print("case        upload     added p50 / p99 during it   worker RSS high-water")  # noqa: T201
    for case, runs in results.items():

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        print(  # noqa: T201
            f"{case:<11} {median('upload_s') * 1000:>6,.0f} ms  "
            f"{median('p50'):>6.1f} / {median('p99'):>6.1f} ms "
            f"({median('tokens_during'):.0f} tokens)"
            f"   {max(run['worker_hwm_mb'] for run in runs):,.0f} MB"
        )


if __name__ == "__main__":
    main()
