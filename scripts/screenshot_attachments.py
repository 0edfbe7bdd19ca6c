"""Take the README's screenshot of a message sent with a photo and a PDF (its thumbnail and its
document card), and of the photo's larger view, light and dark.

    .venv/bin/python scripts/screenshot_attachments.py   → docs/screenshot-attachments-*.png

The app runs as in the browser tests (tests/support/servers.py), answering from the fake
upstream; the files go through the upload endpoint and a plain send from the page's own fetch,
as in tests/e2e/test_attachments_show.py.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402

from tests.e2e.test_attachments_show import SEND_WITH_FILES  # noqa: E402
from tests.support import attachment_files  # noqa: E402
from tests.support.screenshot_site import as_same_visitor, screenshot_site  # noqa: E402

DOCS = REPO / "docs"
REPLY = (
    "The photo is a **sunset over the sea**: the sun low on the horizon, warm orange fading to "
    "violet above it.\n\nThe report says revenue grew **12 %** while costs fell, so the margin "
    "widened; page 2 lists the regions behind it."
)


def sunset(width: int = 1600, height: int = 1000) -> bytes:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.62)
    for y in range(horizon):
        t = y / horizon
        draw.line(
            [(0, y), (width, y)], fill=(int(70 + 185 * t), int(40 + 110 * t), int(120 - 60 * t))
        )
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)
        draw.line(
            [(0, y), (width, y)], fill=(int(40 - 20 * t), int(60 - 30 * t), int(110 - 40 * t))
        )
    r = height // 8
    draw.ellipse([width // 2 - r, horizon - r, width // 2 + r, horizon + r], fill=(255, 214, 120))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def main() -> None:
    files = [
        {"name": "sunset.jpg", "data": base64.b64encode(sunset()).decode()},
        {
            "name": "quarterly-report.pdf",
            "data": base64.b64encode(
                attachment_files.pdf([["Revenue grew 12%."], ["Regions."], ["Costs fell."]])
            ).decode(),
        },
    ]
    with screenshot_site() as (upstream, browser, url, _data_dir):
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 760})
        page = context.new_page()
        page.goto("/streaming-demo")
        page.get_by_text("Connected · WebSocket").wait_for()
        upstream.script(text=REPLY, input_tokens=1680, output_tokens=58)
        conversation = page.evaluate(
            SEND_WITH_FILES,
            {
                "files": files,
                "text": "What do these show?",
                "model": "openai:gpt-4.1-mini",
            },
        )
        for scheme in ("light", "dark"):
            shot = as_same_visitor(browser, url, context, scheme=scheme)
            shot.goto(conversation)
            shot.get_by_text("Connected · WebSocket").wait_for()
            shot.wait_for_function(
                "() => [...document.querySelectorAll('.msg-image img')]"
                ".every((img) => img.complete && img.naturalWidth > 0)"
            )
            shot.screenshot(path=str(DOCS / f"screenshot-attachments-{scheme}.png"))
            shot.get_by_role("link", name="View sunset.jpg").click()
            shot.wait_for_function(
                "() => { const img = document.querySelector('.file-dialog-image');"
                " return img && img.complete && img.naturalWidth > 0; }"
            )
            shot.screenshot(path=str(DOCS / f"screenshot-attachments-view-{scheme}.png"))
            shot.context.close()


if __name__ == "__main__":
    main()
