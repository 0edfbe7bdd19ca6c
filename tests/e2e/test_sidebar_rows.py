"""A sidebar row's own ⋯ menu in headless Chromium: opened and worked by keyboard, rename in the
row, pin into the "Pinned" group, archive to the archived page and back, delete with Undo; the
menu whole on a phone; no axe violations, light or dark."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"


def start_chat(page: Any, upstream: Any, title: str) -> None:
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    upstream.script(text=f"About {title}.")
    field = page.locator("#message-input")
    field.fill(title)
    field.press("Enter")
    page.locator(f"{ASSISTANT} .msg-text.markdown", has_text=f"About {title}.").wait_for()


def row(page: Any, title: str) -> Any:
    return page.locator(
        "#conversation-list .conversation-row",
        has=page.locator(".conversation-item", has_text=re.compile(rf"^{re.escape(title)}$")),
    )


def focused(page: Any) -> str:
    return page.evaluate(
        """() => document.activeElement.getAttribute('aria-label')
                 || document.activeElement.textContent.trim()"""
    )


@pytest.fixture
def three_chats(new_page: Any, provider_server: tuple[str, Any]):
    def open_with(**options: Any) -> Any:
        url, upstream = provider_server
        page = new_page(base_url=url, **options)
        for title in ("Alpha", "Beta", "Gamma"):
            start_chat(page, upstream, title)
        return page

    return open_with


def test_a_rows_menu_by_keyboard_rename_pin_archive_and_delete_with_undo(
    three_chats: Any,
) -> None:
    page = three_chats()
    alpha = row(page, "Alpha")
    button = alpha.locator(".row-menu-button")
    menu = alpha.locator("[role=menu]")
    expect(button).to_have_attribute("aria-haspopup", "menu")
    box = button.bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24

    # Open by keyboard: the first item has focus; arrows wrap; Escape returns to ⋯.
    button.focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    assert focused(page) == "Rename"
    page.keyboard.press("ArrowDown")
    assert focused(page) == "Pin"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert focused(page) == "Delete"
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")

    # Rename in the row: Escape cancels, Enter saves.
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    name = alpha.locator(".row-rename-form input[name=title]")
    expect(name).to_be_focused()
    page.keyboard.type("Nothing")
    page.keyboard.press("Escape")
    expect(name).to_be_hidden()
    expect(button).to_be_focused()
    expect(alpha.locator(".conversation-item")).to_have_text("Alpha")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.type("Alpha, renamed")
    page.keyboard.press("Enter")
    renamed = row(page, "Alpha, renamed")
    expect(renamed).to_be_visible()
    expect(renamed.locator(".row-menu-button")).to_be_focused()
    expect(page.locator("#sidebar-status")).to_have_text("Renamed to “Alpha, renamed”.")

    # Pin: the row leads the sidebar under "Pinned", and keeps focus on its ⋯.
    page.keyboard.press("ArrowDown")
    assert focused(page) == "Rename"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    pinned = page.locator("#group-pinned + .conversation-row .conversation-item")
    expect(pinned).to_have_text("Alpha, renamed")
    expect(row(page, "Alpha, renamed").locator(".row-menu-button")).to_be_focused()
    expect(page.locator("#sidebar-status")).to_have_text("Pinned “Alpha, renamed”.")
    assert row(page, "Alpha, renamed").locator("[role=menuitem]").nth(1).inner_text() == "Unpin"

    # Archive: gone from the sidebar, on the archived page, and back with Unarchive.
    beta = row(page, "Beta")
    beta.locator(".row-menu-button").click()
    beta.get_by_role("menuitem", name="Archive").click()
    expect(row(page, "Beta")).to_have_count(0)
    expect(page.locator("#sidebar-status")).to_have_text("Archived “Beta”.")
    page.get_by_role("link", name="Archived chats").click()
    expect(page.get_by_role("heading", name="Archived chats")).to_be_visible()
    archived = page.locator(".archived-item", has_text="Beta")
    expect(archived.get_by_role("link", name="Beta")).to_be_visible()
    archived.get_by_role("button", name="Unarchive “Beta”").click()
    expect(page.get_by_text("No archived chats.")).to_be_visible()
    page.get_by_role("link", name="← Back to chat").click()
    expect(row(page, "Beta")).to_be_visible()

    # Delete from the row: the page says what went, with Undo, which brings it back.
    page.get_by_text("Connected · WebSocket").wait_for()
    beta = row(page, "Beta")
    beta.locator(".row-menu-button").click()
    beta.get_by_role("menuitem", name="Delete").click()
    note = page.locator(".deleted-note")
    expect(note).to_contain_text("Deleted “Beta”.")
    expect(row(page, "Beta")).to_have_count(0)
    note.get_by_role("button", name="Undo").click()
    expect(page.locator("#conversation-title")).to_have_text("Beta")
    expect(row(page, "Beta")).to_be_visible()


def test_on_a_phone_the_menu_is_whole_and_on_screen(three_chats: Any) -> None:
    page = three_chats(viewport={"width": 390, "height": 700})
    page.locator(".chat-head .sidebar-toggle").click()
    gamma = row(page, "Gamma")
    gamma.locator(".row-menu-button").click()
    menu = gamma.locator("[role=menu]")
    expect(menu).to_be_visible()
    for item in menu.locator("[role=menuitem]").all():
        box = item.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert box["y"] >= 0 and box["y"] + box["height"] <= 700
        # Nothing covers or clips it: the point at its centre is the item itself.
        hit = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.textContent.trim()",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert hit == item.inner_text()
    gamma.get_by_role("menuitem", name="Pin").click()
    expect(page.locator("#group-pinned + .conversation-row .conversation-item")).to_have_text(
        "Gamma"
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_rows_their_open_menu_and_the_archived_page_have_no_axe_violations(
    three_chats: Any, scheme: str, run_axe, describe_violations
) -> None:
    page = three_chats(color_scheme=scheme)
    alpha = row(page, "Alpha")
    alpha.locator(".row-menu-button").click()
    alpha.get_by_role("menuitem", name="Pin").click()
    expect(page.locator("#group-pinned")).to_be_visible()
    beta = row(page, "Beta")
    beta.locator(".row-menu-button").click()
    expect(beta.locator("[role=menu]")).to_be_visible()
    violations = run_axe(page)
    assert not violations, describe_violations(violations)

    beta.get_by_role("menuitem", name="Archive").click()
    expect(row(page, "Beta")).to_have_count(0)
    page.goto("/streaming-demo/archived")
    expect(page.locator(".archived-item")).to_have_count(1)
    violations = run_axe(page)
    assert not violations, describe_violations(violations)


def test_without_javascript_a_rows_menu_opens_in_place_and_its_forms_come_back(
    new_page: Any, provider_server: tuple[str, Any]
) -> None:
    url, upstream = provider_server
    page = new_page(base_url=url, java_script_enabled=False)
    for title in ("First", "Second"):
        upstream.script(text=f"About {title}.")
        page.goto("/streaming-demo")
        page.fill("#message-input", title)
        page.click("#send-button")
        page.locator(ASSISTANT, has_text=f"About {title}.").wait_for()
    back = page.url
    first = row(page, "First")
    expect(first.locator("[role=menu]")).to_be_hidden()
    first.locator(".row-menu-button").click()  # focus within the row opens its menu
    first.get_by_role("menuitem", name="Pin").click()
    expect(page.locator("#group-pinned + .conversation-row .conversation-item")).to_have_text(
        "First"
    )
    assert page.url == back
    second = row(page, "Second")
    second.locator(".row-menu-button").click()
    second.get_by_role("menuitem", name="Rename").click()
    expect(page.locator("#rename-input")).to_be_visible()  # the chat's own rename form
    page.fill("#rename-input", "Second, renamed")
    page.get_by_role("button", name="Rename").click()
    expect(row(page, "Second, renamed")).to_be_visible()
