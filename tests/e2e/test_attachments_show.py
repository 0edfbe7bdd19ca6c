"""Files in sent messages, in Chromium: an image's thumbnail opens a larger view in a dialog by
keyboard (Enter), Escape closes it and the focus returns to the thumbnail; a document shows as a
card; both after a reload, in the light and dark schemes, at 1280 and 390 px, with no axe
violations. The messages are made through the upload endpoint and a plain send from the page's
own fetch (not the composer, which has tests of its own), to a fake OpenAI upstream."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

SEND_WITH_FILES = """async ({files, text, model}) => {
  const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
  const ids = [];
  for (const file of files) {
    const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
    const form = new FormData();
    form.append("file", new Blob([bytes]), file.name);
    const answer = await fetch("/streaming-demo/attachments", {
      method: "POST", body: form, headers: {"X-CSRFToken": token},
    });
    if (answer.status !== 201) throw new Error("upload: " + answer.status + await answer.text());
    ids.push((await answer.json()).id);
  }
  const body = new URLSearchParams({action: "send", message: text, model});
  for (const id of ids) body.append("attachment", id);
  const sent = await fetch("/streaming-demo/messages", {
    method: "POST", body, headers: {"X-CSRFToken": token},
  });
  return sent.url;
}"""


def _file(name: str, data: bytes) -> dict[str, str]:
    return {"name": name, "data": base64.b64encode(data).decode()}


def _conversation_with_files(page: Any, attachment_files: Any) -> str:
    """Send a photo and a PDF as the page's visitor; the conversation's URL."""
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    photo = attachment_files.small_image("PNG", (1200, 800))
    report = attachment_files.pdf([["Revenue grew 12%."], ["Costs fell."]])
    url = page.evaluate(
        SEND_WITH_FILES,
        {
            "files": [_file("sunset.png", photo), _file("report.pdf", report)],
            "text": "What do these show?",
            "model": "openai:gpt-4.1-mini",
        },
    )
    assert "/streaming-demo/c/" in url
    return str(url)


@pytest.mark.parametrize(
    ("scheme", "width"), [("light", 1280), ("dark", 1280), ("light", 390), ("dark", 390)]
)
def test_a_thumbnail_opens_by_keyboard_and_a_document_shows_as_a_card_after_a_reload(
    new_page: Any,
    provider_server: tuple[str, Any],
    run_axe,
    describe_violations,
    artifacts,
    scheme: str,
    width: int,
    files: Any,
) -> None:
    url, upstream = provider_server
    upstream.script(text="A warm sunset over the sea, and a report: revenue grew 12%.")
    page = new_page(base_url=url, color_scheme=scheme, viewport={"width": width, "height": 800})
    page.goto(
        _conversation_with_files(page, files)
    )  # the page as rendered from the database: after a reload

    question = page.locator("#messages > article[data-role='user']")
    thumbnail = question.get_by_role("link", name="View sunset.png")
    expect(thumbnail).to_be_visible()
    image = thumbnail.locator("img")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    card = question.locator(".msg-file-document")
    expect(card).to_contain_text("report.pdf")
    expect(card).to_contain_text("PDF")
    expect(card).to_contain_text("all 2 pages")
    expect(card.get_by_role("link", name="Download report.pdf")).to_have_attribute(
        "href", re.compile(r"^/streaming-demo/attachments/[0-9a-f-]{36}$")
    )
    violations = run_axe(page)
    assert not violations, describe_violations(violations)
    page.screenshot(path=str(artifacts / f"attachments-show-{scheme}-{width}.png"))

    # Enter on the focused thumbnail opens the larger view; its Close button has the focus.
    thumbnail.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="sunset.png")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    expect(dialog.get_by_role("link", name="Download sunset.png")).to_have_attribute(
        "href", thumbnail.get_attribute("href")
    )
    large = dialog.get_by_role("img", name="sunset.png")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth >= 1200", arg=large.element_handle()
    )
    violations = run_axe(page)
    assert not violations, describe_violations(violations)
    page.screenshot(path=str(artifacts / f"attachments-show-dialog-{scheme}-{width}.png"))

    # Escape closes it, and the focus is back on the thumbnail.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(thumbnail).to_be_focused()

    # The Close button closes it as well.
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Enter")  # on Close, focused
    expect(dialog).to_be_hidden()
    expect(thumbnail).to_be_focused()
