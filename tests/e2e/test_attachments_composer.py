"""Attaching files in the composer, in headless Chromium against the real server with the OpenAI
provider pointed at the fake upstream: the file picker, dropping files, pasting an image; the
chips (name, size, thumbnail, what the model reads, removal), the upload's progress, a refused
file's words; and the send reaching the model with the files, over the WebSocket, over SSE and
without JavaScript."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"
CHIP = "#attachment-chips .chip"
# The browser logs the refused upload's 400 (the chip says why).
REFUSED_LOG = r"status of 400 .*/streaming-demo/attachments"
NOTES = "Shopping list:\n- apples\n- bread\n- coffee\n"


def png(width: int = 64, height: int = 48, colour: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def noisy_png(side: int) -> bytes:
    """A PNG that does not compress (for a large upload)."""
    import os

    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG")
    return out.getvalue()


def file_payload(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


@pytest.fixture(scope="module")
def server(serving_with_upstream: Any) -> Iterator[tuple[str, Any]]:
    # Two files a message, so that the limit can be met on the page.
    with serving_with_upstream(
        "chatsite-e2e-attach-",
        CHAT_MAX_FILES_PER_MESSAGE="2",
        CHAT_MAX_UPLOAD_BYTES=str(3 * 1024 * 1024),
    ) as served:
        yield served


def open_chat(new_page: Any, url: str, *, sse: bool = False, **options: Any) -> Any:
    page = new_page(base_url=url, **options)
    page.goto("/streaming-demo" + ("?transport=sse" if sse else ""))
    page.get_by_text("Server-sent events" if sse else "Connected · WebSocket").wait_for()
    return page


def wait_idle(page: Any, replies: int) -> None:
    page.wait_for_function(
        """(count) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length === count && ![...all].some((a) => a.dataset.status === "streaming");
        }""",
        arg=replies,
        timeout=20_000,
    )


def ready_chips(page: Any, count: int) -> None:
    page.wait_for_function(
        """(count) => document.querySelectorAll('#attachment-chips .chip[data-state="ready"]')
            .length === count""",
        arg=count,
        timeout=20_000,
    )


def pick(page: Any, *files: dict[str, Any]) -> None:
    page.set_input_files("#attach-input", list(files))


def test_picked_files_become_chips_and_reach_the_model(new_page: Any, server: Any) -> None:
    url, upstream = server
    page = open_chat(new_page, url)
    pick(page, file_payload("photo.png", png(640, 480), "image/png"))
    pick(page, file_payload("notes.md", NOTES.encode(), "text/markdown"))
    ready_chips(page, 2)

    chips = page.locator(CHIP)
    photo, notes = chips.nth(0), chips.nth(1)
    assert photo.locator(".chip-name").inner_text() == "photo.png"
    assert photo.locator(".chip-name").get_attribute("title") == "photo.png"
    assert re.fullmatch(r"\d+ (bytes|KB)", photo.locator(".chip-size").inner_text())
    # The server's thumbnail once uploaded (the local preview's object URL is let go).
    thumb = photo.locator("img.chip-thumb")
    assert "/thumbnail" in (thumb.get_attribute("src") or "")
    page.wait_for_function(
        "() => document.querySelector('#attachment-chips img.chip-thumb').naturalWidth > 0"
    )
    assert notes.locator(".chip-size").inner_text() == f"{len(NOTES)} bytes"
    assert notes.locator(".chip-note").inner_text().startswith("The model reads ")
    assert notes.locator("img").count() == 0

    upstream.script(text="Nice photo and list.")
    page.fill("#message-input", "What do you see?")
    page.press("#message-input", "Enter")
    wait_idle(page, 1)
    # Sent: the chips went with the message.
    page.wait_for_function("() => document.getElementById('attachment-chips').hidden")
    request = upstream.requests[-1]
    assert request.images() == [("image_url", "JPEG", (640, 480))]
    [(name, included, text)] = request.documents()
    assert name == "notes.md" and included and "- bread" in text

    # After a reload the conversation still holds the message that carried them.
    page.reload()
    page.locator(f"{ASSISTANT} .msg-text", has_text="Nice photo and list.").wait_for()


def test_drop_and_paste_attach_files_and_a_file_alone_is_a_message(
    new_page: Any, server: Any, artifacts: Any
) -> None:
    url, upstream = server
    page = open_chat(new_page, url, sse=True)
    image = list(png(32, 32, "orange"))
    # Files dragged over the page show the drop zone; dropped, they become chips.
    page.evaluate(
        """(bytes) => {
          const data = new DataTransfer();
          data.items.add(new File([new Uint8Array(bytes)], "dropped.png", { type: "image/png" }));
          const chat = document.getElementById("messages");
          const drag = (type) => chat.dispatchEvent(
            new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
          drag("dragenter");
          window.__zoneShown = !document.getElementById("drop-zone").hidden;
          drag("dragover");
          drag("drop");
        }""",
        image,
    )
    assert page.evaluate("window.__zoneShown") is True
    page.evaluate(
        """() => document.body.dispatchEvent(new DragEvent("dragenter", {
             dataTransfer: (() => { const d = new DataTransfer();
               d.items.add(new File(["x"], "x.txt")); return d; })(), bubbles: true }))"""
    )
    page.screenshot(path=str(artifacts / "attach-composer-drop-zone.png"))
    page.evaluate(
        """() => document.body.dispatchEvent(new DragEvent("dragleave", {
             dataTransfer: (() => { const d = new DataTransfer();
               d.items.add(new File(["x"], "x.txt")); return d; })(), bubbles: true }))"""
    )
    assert page.locator("#drop-zone").is_hidden()
    ready_chips(page, 1)
    assert page.locator(CHIP).first.locator(".chip-name").inner_text() == "dropped.png"

    # A pasted image (a screenshot) gets a name of its own.
    page.locator("#message-input").focus()
    page.evaluate(
        """(bytes) => {
          const data = new DataTransfer();
          data.items.add(new File([new Uint8Array(bytes)], "image.png", { type: "image/png" }));
          document.getElementById("message-input").dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }""",
        list(png(20, 10, "purple")),
    )
    ready_chips(page, 2)
    assert page.locator(CHIP).nth(1).locator(".chip-name").inner_text().startswith("Pasted image")

    # Removing a chip moves the focus to the next one's ✕ (or back to the message box).
    page.locator(CHIP).first.get_by_role("button", name="Remove dropped.png").click()
    assert page.locator(CHIP).count() == 1
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')") or ""
    assert focused.startswith("Remove Pasted image")
    page.keyboard.press("Enter")
    assert page.locator(CHIP).count() == 0
    assert page.evaluate("document.activeElement.id") == "message-input"

    # Over SSE, with no text: files alone are a message.
    page.evaluate(
        """(bytes) => {
          const data = new DataTransfer();
          data.items.add(new File([new Uint8Array(bytes)], "alone.png", { type: "image/png" }));
          document.body.dispatchEvent(
            new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        image,
    )
    ready_chips(page, 1)
    upstream.script(text="An orange square.")
    page.get_by_role("button", name="Send").click()
    wait_idle(page, 1)
    assert upstream.requests[-1].images() == [("image_url", "JPEG", (32, 32))]
    assert page.locator(CHIP).count() == 0


def test_a_refused_file_keeps_the_servers_words_and_is_never_sent(
    new_page: Any, server: Any, page_errors: Any
) -> None:
    url, upstream = server
    page_errors.allow(REFUSED_LOG)
    page = open_chat(new_page, url)
    pick(page, file_payload("tool.png", b"MZ\x90\x00" + b"\x00" * 400, "image/png"))
    refused = page.locator(f"{CHIP}[data-state='refused']")
    refused.wait_for()
    alert = refused.get_by_role("alert")
    words = alert.inner_text()
    assert words and "tool.png" not in words  # the server's reason, not a generic failure
    # Refused on the page before uploading, in the server's words: too large, too many.
    pick(page, file_payload("big.txt", b"x" * (3 * 1024 * 1024 + 1), "text/plain"))
    page.get_by_text("This file is 3.0 MB: more than the 3 MB allowed. Attach a smaller file.")
    pick(
        page,
        file_payload("a.txt", b"one", "text/plain"),
        file_payload("b.txt", b"two", "text/plain"),
        file_payload("c.txt", b"three", "text/plain"),
    )
    ready_chips(page, 2)
    page.get_by_text(
        "A message can carry at most 2 files; this one has 3. Remove some and send again."
    ).wait_for()

    upstream.script(text="Got two notes.")
    page.fill("#message-input", "Read these")
    page.press("#message-input", "Enter")
    wait_idle(page, 1)
    assert sorted(name for name, _, _ in upstream.requests[-1].documents()) == ["a.txt", "b.txt"]


def test_send_waits_for_an_upload_in_progress(new_page: Any, server: Any) -> None:
    url, upstream = server
    page = open_chat(new_page, url)
    held: list[Any] = []
    page.route("**/streaming-demo/attachments", lambda route: held.append(route))
    pick(page, file_payload("large.png", noisy_png(700), "image/png"))
    chip = page.locator(f"{CHIP}[data-state='uploading']")
    chip.wait_for()
    progress = chip.get_by_role("progressbar", name="Uploading large.png")
    progress.wait_for()
    page.fill("#message-input", "Is it big?")
    page.press("#message-input", "Enter")
    page.get_by_text("Waiting for a file to finish uploading").wait_for()
    assert page.locator(ASSISTANT).count() == 0

    upstream.script(text="It is big.")
    for _ in range(100):  # the route's handler runs while Playwright is called
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the upload never reached the route"
    held[0].continue_()
    wait_idle(page, 1)  # sent by itself once the upload was done
    assert upstream.requests[-1].images()[0][2] == (700, 700)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_chips_look_right_and_pass_axe(
    new_page: Any,
    server: Any,
    scheme: str,
    width: int,
    run_axe: Any,
    describe_violations: Any,
    artifacts: Any,
    page_errors: Any,
) -> None:
    url, _ = server
    page_errors.allow(REFUSED_LOG)
    page = open_chat(new_page, url, color_scheme=scheme, viewport={"width": width, "height": 800})
    pick(
        page,
        file_payload("a-long-holiday-photo-name-from-the-beach.png", png(400, 300), "image/png"),
    )
    pick(page, file_payload("tool.png", b"MZ\x90\x00" + b"\x00" * 400, "image/png"))
    ready_chips(page, 1)
    page.locator(f"{CHIP}[data-state='refused']").wait_for()
    label = page.locator("label.attach-button")
    box = label.bounding_box()
    assert box and box["width"] >= 24 and box["height"] >= 24
    violations = run_axe(page)
    assert not violations, describe_violations(violations)
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"attach-composer-{scheme}-{width}.png"))


@pytest.mark.parametrize("width", [1280, 390])
def test_without_javascript_a_file_goes_with_the_message(
    new_page: Any,
    server: Any,
    page_errors: Any,
    width: int,
    artifacts: Any,
) -> None:
    url, upstream = server
    page_errors.allow(r"status of 400 .*/streaming-demo/messages")  # the refused send's page
    page = new_page(
        base_url=url, java_script_enabled=False, viewport={"width": width, "height": 800}
    )
    page.goto("/streaming-demo")
    # The browser's own file input, labelled, beside the model picker.
    assert page.get_by_label("Attach files").is_visible()
    upstream.script(text="A fine picture.")
    page.set_input_files("#attach-input", [file_payload("nojs.png", png(50, 40), "image/png")])
    page.fill("#message-input", "Look at this")
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"attach-composer-nojs-{width}.png"))
    page.get_by_role("button", name="Send").click()
    page.locator(f"{ASSISTANT} .msg-text", has_text="A fine picture.").wait_for(timeout=20_000)
    assert upstream.requests[-1].images() == [("image_url", "JPEG", (50, 40))]

    # A refused file re-renders the page with the reason, naming the file.
    page.set_input_files(
        "#attach-input", [file_payload("tool.png", b"MZ\x90\x00" + b"\x00" * 400, "image/png")]
    )
    page.fill("#message-input", "And this?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#composer-error")).to_have_text(re.compile(r"^tool\.png: \w"))
    assert page.locator("#message-input").input_value() == "And this?"
