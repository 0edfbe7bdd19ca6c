"""A sidebar row's actions over HTTP — rename in place, pin, archive, delete — with htmx (the
sidebar's list comes back) and without JavaScript (plain forms that redirect back), never for
someone else, and the archived chats' page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.models import Conversation, ConversationMember, Message
from chat.replies import start as services

HTMX = {"HX-Request": "true"}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat_of(page_visitor):
    def chat_of(client: Client, title: str) -> Conversation:
        started = services.reply_start(
            visitor=page_visitor(client), conversation_id=None, text=title, model_choice="demo:demo"
        )
        Message.objects.filter(pk=started.assistant_message.pk).update(
            status="complete", ended_reason="completed", content="Sure."
        )
        return started.conversation

    return chat_of


def _sidebar(client: Client) -> str:
    page = client.get("/streaming-demo").content.decode()
    return page.split('id="conversation-list"')[1].split("</nav>")[0]


def _titles(sidebar_html: str) -> list[str]:
    return re.findall(
        r'class="conversation-item[^"]*"[^>]*>(?:<span[^>]*>[^<]*</span>)?([^<]*)</a>', sidebar_html
    )


def test_every_own_row_has_a_menu_button_with_its_actions(client, chat_of):
    chat = chat_of(client, "Trip to Porto")
    sidebar = _sidebar(client)
    assert f'id="row-menu-button-{chat.pk}"' in sidebar
    assert 'aria-haspopup="menu"' in sidebar and 'aria-expanded="false"' in sidebar
    assert 'aria-label="Actions for “Trip to Porto”"' in sidebar
    menu = sidebar.split(f'id="row-menu-{chat.pk}"')[1].split("</div>")[0]
    assert 'role="menu"' in sidebar
    assert re.findall(r'role="menuitem"[^>]*>([^<]+)<', menu) == [
        "Rename",
        "Pin",
        "Archive",
        "Delete",
    ]
    for action in ("pin", "archive", "delete"):
        assert f'action="/streaming-demo/c/{chat.pk}/{action}"' in menu
    assert 'name="csrfmiddlewaretoken" value="' in menu and 'value=""' not in menu


def test_pin_over_htmx_returns_the_sidebar_with_a_pinned_group_and_says_so(client, chat_of):
    chat_of(client, "Older")
    chat = chat_of(client, "Pin me")
    other = chat_of(client, "Newest")

    response = client.post(
        f"/streaming-demo/c/{chat.pk}/pin",
        headers=HTMX | {"HX-Current-URL": f"http://testserver/streaming-demo/c/{other.pk}"},
    )

    html = response.content.decode()
    assert response.status_code == 200
    pinned, dated = html.split('id="group-today"')
    assert ">Pinned</h2>" in pinned and _titles(pinned) == ["Pin me"]
    assert _titles(dated) == ["Newest", "Older"]
    assert 'hx-swap-oob="innerHTML:#sidebar-status">Pinned “Pin me”.' in html
    assert re.search(rf'conversation-item active" id="conversation-{other.pk}"', html)
    assert f'action="/streaming-demo/c/{chat.pk}/unpin"' in html
    assert f'value="/streaming-demo/c/{other.pk}"' in html  # a plain post comes back there

    client.post(f"/streaming-demo/c/{chat.pk}/unpin", headers=HTMX)
    assert ">Pinned</h2>" not in _sidebar(client)


def test_without_javascript_the_forms_redirect_back_to_the_page_they_came_from(client, chat_of):
    chat = chat_of(client, "Plain forms")
    other = chat_of(client, "Open one")

    back = f"/streaming-demo/c/{other.pk}"
    response = client.post(f"/streaming-demo/c/{chat.pk}/pin", {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    assert ">Pinned</h2>" in _sidebar(client)

    response = client.post(f"/streaming-demo/c/{chat.pk}/archive", {"next": back})
    assert response["Location"] == back
    assert "Plain forms" not in _sidebar(client)

    # Somewhere else entirely is not a place to go back to.
    response = client.post(
        f"/streaming-demo/c/{chat.pk}/unarchive", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/streaming-demo/c/{chat.pk}"

    # Delete from a row: back where it came from, which says what went, with Undo.
    response = client.post(f"/streaming-demo/c/{chat.pk}/delete", {"next": back})
    assert response["Location"] == f"{back}?deleted={chat.pk}"
    page = client.get(response["Location"]).content.decode()
    assert "Deleted “Plain forms”." in page and f"/streaming-demo/c/{chat.pk}/restore" in page

    # Deleting the open chat from its own row goes to a new chat instead.
    response = client.post(f"/streaming-demo/c/{other.pk}/delete", {"next": back})
    assert response["Location"] == f"/streaming-demo?deleted={other.pk}"


def test_archived_chats_have_their_own_page_to_open_unarchive_or_delete(client, chat_of):
    chat = chat_of(client, "Old project")
    chat_of(client, "Current")
    assert 'href="/streaming-demo/archived"' in client.get("/streaming-demo").content.decode()
    assert "No archived chats" in client.get("/streaming-demo/archived").content.decode()

    client.post(f"/streaming-demo/c/{chat.pk}/archive", headers=HTMX)
    assert _titles(_sidebar(client)) == ["Current"]
    page = client.get("/streaming-demo/archived").content.decode()
    assert f'href="/streaming-demo/c/{chat.pk}">Old project</a>' in page
    opened = client.get(f"/streaming-demo/c/{chat.pk}")  # its link works, and says so
    assert opened.status_code == 200 and "Archived: not in your sidebar." in opened.content.decode()
    assert f'action="/streaming-demo/c/{chat.pk}/unarchive"' in opened.content.decode()

    response = client.post(
        f"/streaming-demo/c/{chat.pk}/unarchive", {"next": "/streaming-demo/archived"}
    )
    assert response["Location"] == "/streaming-demo/archived"
    assert _titles(_sidebar(client)) == ["Current", "Old project"]

    client.post(f"/streaming-demo/c/{chat.pk}/archive")
    response = client.post(
        f"/streaming-demo/c/{chat.pk}/delete", {"next": "/streaming-demo/archived"}
    )
    assert response["Location"] == f"/streaming-demo/archived?deleted={chat.pk}"
    page = client.get(response["Location"]).content.decode()
    assert "Deleted “Old project”." in page and "No archived chats" in page


def test_rename_in_the_row_returns_the_sidebar_and_the_header_when_it_is_open(client, chat_of):
    chat = chat_of(client, "Draft")
    response = client.post(
        f"/streaming-demo/c/{chat.pk}/rename",
        {"title": "Final name", "sidebar": "1"},
        headers=HTMX | {"HX-Current-URL": f"http://testserver/streaming-demo/c/{chat.pk}"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and _titles(html) == ["Final name"]
    assert '<h1 id="conversation-title" hx-swap-oob="true">Final name</h1>' in html
    assert "Renamed to “Final name”." in html

    refused = client.post(
        f"/streaming-demo/c/{chat.pk}/rename", {"title": "  ", "sidebar": "1"}, headers=HTMX
    )
    assert refused.status_code == 400 and refused["HX-Reswap"] == "none"
    assert Conversation.objects.get(pk=chat.pk).title == "Final name"


def test_someone_elses_chat_gets_the_same_404_as_a_missing_one(page_visitor, chat_of):
    owner, stranger = Client(), Client()
    chat = chat_of(owner, "Private")
    page_visitor(stranger)
    for action in ("pin", "unpin", "archive", "unarchive"):
        for headers in ({}, HTMX):
            response = stranger.post(f"/streaming-demo/c/{chat.pk}/{action}", headers=headers)
            assert response.status_code == 404
            missing = stranger.post(
                f"/streaming-demo/c/00000000-0000-4000-8000-000000000000/{action}", headers=headers
            )
            assert missing.status_code == 404
    assert "Private" not in stranger.get("/streaming-demo/archived").content.decode()
    chat.refresh_from_db()
    assert chat.pinned_at is None and chat.archived_at is None


def test_a_member_has_no_row_menu_and_is_refused():
    owner, member = Client(), Client()
    ana = User.objects.create_user("ana", password="pw")
    ben = User.objects.create_user("ben", password="pw")
    owner.force_login(ana)
    member.force_login(ben)
    chat = Conversation.objects.create(user=ana, title="Room", model="demo")
    ConversationMember.objects.create(conversation=chat, user=ben)

    assert "Room" in _sidebar(member) and "row-menu-button" not in _sidebar(member)
    assert member.post(f"/streaming-demo/c/{chat.pk}/pin").status_code == 403
    assert member.post(f"/streaming-demo/c/{chat.pk}/archive", headers=HTMX).status_code == 403
    chat.refresh_from_db()
    assert chat.pinned_at is None and chat.archived_at is None


def test_the_forms_need_the_csrf_token(page_visitor, chat_of):
    browser = Client(enforce_csrf_checks=True)
    chat = chat_of(browser, "Guarded")
    for action in ("pin", "archive"):
        assert browser.post(f"/streaming-demo/c/{chat.pk}/{action}").status_code == 403
    token = browser.cookies["csrftoken"].value if "csrftoken" in browser.cookies else None
    if token is None:
        browser.get("/streaming-demo")
        token = browser.cookies["csrftoken"].value
    response = browser.post(
        f"/streaming-demo/c/{chat.pk}/pin",
        {"csrfmiddlewaretoken": token, "next": "/streaming-demo"},
    )
    assert response.status_code == 302
    chat.refresh_from_db()
    assert chat.pinned_at is not None and chat.archived_at is None
