"""What the browser tests check pages with: axe-core, the Markdown corpus, the luminance of a
screenshot, and what Chart.js drew on a canvas."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

E2E = Path(__file__).resolve().parents[1] / "e2e"
AXE = E2E / "vendor" / "axe-core" / "axe.min.js"
CORPUS = (E2E / "data" / "markdown_corpus.md").read_text()


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default).

    The script is evaluated through the DevTools protocol, which the page's CSP does not govern;
    it is never served by the app."""
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(" ") + " — " + n.failureSummary),
          }));
        }"""
    )
    return list(result)


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"][:5])
        for v in violations
    )


def png_mean_luminance(png: bytes) -> float:
    """Mean relative luminance (0 black … 1 white) of an 8-bit RGB/RGBA PNG, such as a
    Chromium screenshot: enough to tell a dark page from a light one without an image library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = bit_depth = colour_type = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, bit_depth, colour_type = struct.unpack(">IIBB", data[:10])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    assert bit_depth == 8 and colour_type in (2, 6), (bit_depth, colour_type)
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    total = 0.0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + predictor) & 0xFF
        for i in range(0, stride, channels * 4):  # every 4th pixel is plenty
            r, g, b = line[i], line[i + 1], line[i + 2]
            total += (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
        previous = line
    return total / (height * ((width + 3) // 4))


# The analytics page's charts.
CHARTS = ["chart-cost", "chart-tokens", "chart-replies", "chart-ttft", "chart-duration"]


def drawn(page: Any, canvas_id: str) -> dict[str, Any]:
    """The chart on a canvas: how many points it plots, and whether any pixel was painted."""
    return page.evaluate(
        """(id) => {
            const canvas = document.getElementById(id);
            const chart = window.Chart && window.Chart.getChart(canvas);
            const context = canvas.getContext("2d");
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
            return {
                chart: !!chart,
                labels: chart ? chart.data.labels.length : 0,
                series: chart ? chart.data.datasets.length : 0,
                painted: painted,
                width: canvas.width,
            };
        }""",
        canvas_id,
    )
