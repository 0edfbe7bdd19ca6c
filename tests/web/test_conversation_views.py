"""Managing conversations over HTTP: rename, delete, search, the sidebar's groups and pages,
export and versions — with htmx and without JavaScript, and never for someone else."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from chat.conversations import writes
from chat.models import Conversation, Message
from chat.replies import start as services

HTMX = {"HX-Request": "true"}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation_of(page_visitor):
    def conversation_of(client, title="Plan a trip", reply="Here is a plan.", **reply_fields):
        """A conversation of this client's visitor with one finished reply."""
        started = services.reply_start(
            visitor=page_visitor(client), conversation_id=None, text=title, model_choice="demo:demo"
        )
        fields = {
            "status": "complete",
            "ended_reason": "completed",
            "content": reply,
            "input_tokens": 5,
            "output_tokens": 7,
            "usage_source": "provider",
            "cost_microusd": 0,
        }
        Message.objects.filter(pk=started.assistant_message.pk).update(**fields | reply_fields)
        return started.conversation

    return conversation_of


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Rename ------------------------------------------------------------------------------------


def test_rename_over_htmx_updates_title_and_sidebar(client, conversation_of):
    conversation = conversation_of(client)

    response = client.post(
        f"/streaming-demo/c/{conversation.pk}/rename", {"title": "  Lisbon   in May "}, headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert '<h1 id="conversation-title" hx-swap-oob="true">Lisbon in May</h1>' in html
    assert f'id="conversation-{conversation.pk}" href' in html and "Lisbon in May</a>" in html
    assert Conversation.objects.get().title == "Lisbon in May"


def test_rename_without_javascript_redirects_back(client, conversation_of):
    conversation = conversation_of(client)

    response = client.post(f"/streaming-demo/c/{conversation.pk}/rename", {"title": "<b>Bold</b>"})

    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    assert "&lt;b&gt;Bold&lt;/b&gt;" in html and "<b>Bold</b>" not in html


def test_rename_to_nothing_is_refused(client, conversation_of):
    conversation = conversation_of(client)

    response = client.post(
        f"/streaming-demo/c/{conversation.pk}/rename", {"title": "   "}, headers=HTMX
    )

    assert response.status_code == 400
    assert "Give the conversation a name." in response.content.decode()
    assert Conversation.objects.get().title == "Plan a trip"


def test_someone_else_cannot_rename_delete_or_export(page_visitor, conversation_of):
    owner, stranger = Client(), Client()
    conversation = conversation_of(owner)
    page_visitor(stranger)

    base = f"/streaming-demo/c/{conversation.pk}"
    assert stranger.post(f"{base}/rename", {"title": "Mine now"}).status_code == 404
    assert stranger.post(f"{base}/delete").status_code == 404
    assert stranger.get(f"{base}/export.md").status_code == 404
    assert stranger.get(f"{base}/export.json").status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Plan a trip" and conversation.deleted_at is None


# --- Delete --------------------------------------------------------------------------------------


def test_deleted_conversation_is_gone_for_its_owner_everywhere(client, conversation_of):
    conversation = conversation_of(client, title="Secret plans", reply="The secret is safe.")

    response = client.post(f"/streaming-demo/c/{conversation.pk}/delete")

    assert response.status_code == 302
    assert response["Location"] == f"/streaming-demo?deleted={conversation.pk}"
    assert client.get(f"/streaming-demo/c/{conversation.pk}").status_code == 404
    assert "Secret plans" not in client.get("/streaming-demo").content.decode()
    assert "Secret plans" not in client.get("/streaming-demo/search?q=secret").content.decode()
    assert client.get(f"/streaming-demo/c/{conversation.pk}/export.json").status_code == 404
    # Kept for staff review, marked.
    conversation.refresh_from_db()
    assert conversation.deleted_at is not None


def test_a_delete_can_be_undone_from_the_next_page_or_the_chats_link(client, conversation_of):
    """No undo after a delete, and the deleted chat's link told its own owner to sign in."""
    conversation = conversation_of(client, title="Trip to Porto")
    after = client.post(f"/streaming-demo/c/{conversation.pk}/delete", follow=True)
    page = after.content.decode()
    assert "Deleted “Trip to Porto”." in page
    assert f'action="/streaming-demo/c/{conversation.pk}/restore"' in page

    link = client.get(f"/streaming-demo/c/{conversation.pk}")
    assert link.status_code == 404
    assert "You deleted this chat" in link.content.decode()
    assert "Sign in to see it" not in link.content.decode()

    restored = client.post(f"/streaming-demo/c/{conversation.pk}/restore")
    assert restored["Location"] == f"/streaming-demo/c/{conversation.pk}"
    assert "Trip to Porto" in client.get(restored["Location"]).content.decode()
    conversation.refresh_from_db()
    assert conversation.deleted_at is None


def test_only_its_owner_may_restore_and_others_learn_nothing(page_visitor, conversation_of):
    owner, stranger = Client(), Client()
    conversation = conversation_of(owner, title="Private")
    owner.post(f"/streaming-demo/c/{conversation.pk}/delete")
    page_visitor(stranger)

    assert stranger.post(f"/streaming-demo/c/{conversation.pk}/restore").status_code == 404
    link = stranger.get(f"/streaming-demo/c/{conversation.pk}").content.decode()
    assert "You deleted this chat" not in link and "Private" not in link
    assert (
        "Deleted “"
        not in stranger.get(f"/streaming-demo?deleted={conversation.pk}").content.decode()
    )
    conversation.refresh_from_db()
    assert conversation.deleted_at is not None


def test_with_purge_a_delete_says_so_and_offers_no_undo(client, conversation_of, settings):
    settings.CHAT_PURGE_DELETED = True
    conversation = conversation_of(client, title="Gone for good")
    page = client.post(f"/streaming-demo/c/{conversation.pk}/delete", follow=True).content.decode()
    assert "The chat was deleted." in page and "Undo" not in page
    assert client.post(f"/streaming-demo/c/{conversation.pk}/restore").status_code == 404


def test_staff_see_a_deleted_conversation_marked_and_can_filter(
    client, admin_client, conversation_of
):
    kept = conversation_of(client, title="Kept one")
    gone = conversation_of(client, title="Gone one")
    client.post(f"/streaming-demo/c/{gone.pk}/delete")

    html = admin_client.get("/admin/chat/conversation/").content.decode()
    assert re.search(r'Gone one(</span>)?\s*<span class="review-badge review-badge-deleted"', html)
    deleted_only = admin_client.get("/admin/chat/conversation/?deleted=yes").content.decode()
    assert "Gone one" in deleted_only and "Kept one" not in deleted_only
    assert kept.title in admin_client.get("/admin/chat/conversation/?deleted=no").content.decode()


def test_purge_setting_removes_the_rows(client, settings, conversation_of):
    settings.CHAT_PURGE_DELETED = True
    conversation = conversation_of(client)

    client.post(f"/streaming-demo/c/{conversation.pk}/delete")

    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_conversation_is_not_deleted_while_a_reply_streams(client, page_visitor):
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text="hi", model_choice="demo:demo"
    )

    response = client.post(f"/streaming-demo/c/{started.conversation.pk}/delete")

    assert response.status_code == 400
    assert "still streaming" in response.content.decode()
    assert Conversation.objects.get().deleted_at is None


# --- Search --------------------------------------------------------------------------------------


def test_search_finds_titles_and_message_text_and_escapes_them(client, conversation_of):
    by_title = conversation_of(client, title="Gardening tips")
    by_text = conversation_of(client, title="Other", reply="Try <script>alert(1)</script> compost")
    conversation_of(client, title="Unrelated", reply="Nothing here")

    html = client.get("/streaming-demo/search?q=COMPOST", headers=HTMX).content.decode()
    assert f"/streaming-demo/c/{by_text.pk}" in html and "Gardening" not in html
    assert "<mark>compost</mark>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html

    html = client.get("/streaming-demo/search?q=garden", headers=HTMX).content.decode()
    assert f"/streaming-demo/c/{by_title.pk}" in html and "1 result for" in html


def test_search_snippets_keep_the_spaces_around_the_match(client, conversation_of):
    conversation_of(client, title="Testing", reply="Test it with\n  pytest and\tcoverage, daily.")

    html = client.get("/streaming-demo/search?q=pytest", headers=HTMX).content.decode()

    assert "Test it with <mark>pytest</mark> and coverage, daily." in html


def test_search_without_javascript_renders_the_page_with_results(client, conversation_of):
    conversation = conversation_of(client, title="Bread recipes")

    response = client.get("/streaming-demo/search?q=bread")

    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert f'href="/streaming-demo/c/{conversation.pk}"' in html
    assert 'value="bread"' in html


def test_search_is_capped_and_only_covers_ones_own(client, settings, conversation_of):
    settings.CHAT_SEARCH_MAX_RESULTS = 3
    for n in range(5):
        conversation_of(client, title=f"Soup {n}")
    stranger = Client()
    conversation_of(stranger, title="Soup of someone else")

    html = client.get("/streaming-demo/search?q=soup", headers=HTMX).content.decode()

    assert html.count('class="search-hit"') == 3 and "3+ results" in html
    assert "someone else" not in html


def test_search_matches_other_versions_but_not_deleted_turns(client, page_visitor, conversation_of):
    conversation = conversation_of(client, title="Versions", reply="", status="error")
    failed = conversation.messages.get(role="assistant")
    Message.objects.filter(pk=failed.pk).update(content="ghost words")
    writes.turn_delete(visitor=page_visitor(client), message_id=failed.pk)

    html = client.get("/streaming-demo/search?q=ghost", headers=HTMX).content.decode()
    assert "Nothing found" in html


# --- Sidebar groups and pages ------------------------------------------------------------------


# Noon in the site's time zone, far from midnight and from a change of clocks: "now minus one
# day" is yesterday, whenever the suite runs.
NOON = datetime(2026, 3, 18, 12, 0, tzinfo=ZoneInfo(django_settings.TIME_ZONE))


@time_machine.travel(NOON, tick=False)
def test_sidebar_groups_by_day_of_last_activity(client, conversation_of):
    now = timezone.now()
    for title, age in [("Fresh", 0), ("Last night", 1), ("This week", 4), ("Ancient", 40)]:
        conversation = conversation_of(client, title=title)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(days=age))

    html = client.get("/streaming-demo").content.decode()

    order = [html.index(text) for text in [
        ">Today<", "Fresh", ">Yesterday<", "Last night", ">Previous 7 days<", "This week",
        ">Older<", "Ancient",
    ]]  # fmt: skip
    assert order == sorted(order)


@time_machine.travel(NOON, tick=False)
def test_long_histories_page_with_show_more(client, settings, conversation_of):
    settings.CHAT_SIDEBAR_PAGE_SIZE = 3
    now = timezone.now()
    for n, age in enumerate([0, 1, 2, 3, 10, 11, 12]):
        conversation = conversation_of(client, title=f"Chat number {n}")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(days=age))

    html = client.get("/streaming-demo").content.decode()
    assert html.count('class="conversation-item') == 3
    assert 'href="?shown=6"' in html
    more = re.search(r'hx-get="([^"]+)"[^>]*>Show more', html)
    assert more

    page = client.get(more.group(1).replace("&amp;", "&"), headers=HTMX).content.decode()
    assert re.findall(r">Chat number (\d)<", page) == ["3", "4", "5"]
    # "Previous 7 days" started on the first page: its heading is not repeated.
    assert ">Previous 7 days<" not in page and ">Older<" in page
    assert "Show more" in page

    # Without JavaScript the link reloads the page with a longer list.
    assert (
        client.get("/streaming-demo?shown=6").content.decode().count('class="conversation-item')
        == 6
    )
    redirect = client.get(more.group(1).replace("&amp;", "&"))
    assert redirect.status_code == 302 and redirect["Location"] == "/streaming-demo?shown=6"


# --- Export --------------------------------------------------------------------------------------


def test_export_markdown_is_a_download_of_the_visible_branch(client, conversation_of):
    conversation = conversation_of(client, title="Trip: Lisbon/Porto?", reply="**Go** in May.")

    response = client.get(f"/streaming-demo/c/{conversation.pk}/export.md")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    day = timezone.localdate()
    assert response["Content-Disposition"] == (
        f'attachment; filename="trip-lisbonporto-{day:%Y-%m-%d}.md"'
    )
    text = response.content.decode()
    assert text.startswith("# Trip: Lisbon/Porto?\n")
    assert (
        "## You\n\nTrip: Lisbon/Porto?" in text and "## Assistant · demo\n\n**Go** in May." in text
    )


def test_export_json_holds_every_branch_with_usage(client, page_visitor, conversation_of):
    conversation = conversation_of(client, title="Jokes", reply="First take.")
    visitor = page_visitor(client)
    first_reply = conversation.messages.get(role="assistant")
    again = services.reply_regenerate(visitor=visitor, message_id=first_reply.pk)
    Message.objects.filter(pk=again.assistant_message.pk).update(
        status="stopped", ended_reason="stopped", content="Second", usage_source="estimated"
    )

    response = client.get(f"/streaming-demo/c/{conversation.pk}/export.json")

    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    document = json.loads(response.content)
    assert document["title"] == "Jokes" and document["branches"] == "all"
    question, first, second = document["messages"]
    assert question["role"] == "user" and question["text"] == "Jokes"
    assert first["parent_id"] == second["parent_id"] == question["id"]
    assert first["on_visible_branch"] is False and second["on_visible_branch"] is True
    assert first["usage"] == {
        "input_tokens": 5, "output_tokens": 7, "cached_input_tokens": None, "source": "provider",
    }  # fmt: skip
    assert first["model"] == "demo" and first["ended_reason"] == "completed"
    assert second["ended_reason"] == "stopped" and second["created_at"]


def test_export_json_holds_the_owners_rating_and_comment(client, conversation_of):
    conversation = conversation_of(client, title="Rate me", reply="Rated.")
    Message.objects.filter(conversation=conversation, role="assistant").update(
        feedback=Message.Feedback.DOWN, feedback_comment="Too short", feedback_at=timezone.now()
    )

    document = json.loads(client.get(f"/streaming-demo/c/{conversation.pk}/export.json").content)

    question, answer = document["messages"]
    assert answer["feedback"] == "bad" and answer["feedback_comment"] == "Too short"
    assert "feedback" not in question  # a user message has no rating


# --- Versions ----------------------------------------------------------------------------------


def test_version_switch_over_htmx_redraws_the_list_and_without_js_redirects(
    client, page_visitor, conversation_of
):
    conversation = conversation_of(client, title="Pick one", reply="Version one")
    first = conversation.messages.get(role="assistant")
    again = services.reply_regenerate(visitor=page_visitor(client), message_id=first.pk)
    Message.objects.filter(pk=again.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="Version two"
    )

    html = client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()
    assert "Version two" in html and "Version one" not in html
    assert '<span class="version-count">2/2</span>' in html

    response = client.post(f"/streaming-demo/messages/{first.pk}/show", headers=HTMX)
    html = response.content.decode()
    assert 'hx-swap-oob="innerHTML:#messages"' in html
    assert "Version one" in html and "Version two" not in html
    assert '<span class="version-count">1/2</span>' in html

    response = client.post(f"/streaming-demo/messages/{again.assistant_message.pk}/show")
    assert response.status_code == 302
    assert "Version two" in client.get(response["Location"]).content.decode()


def test_edit_without_javascript_starts_a_new_branch(client, settings, conversation_of):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 0
    conversation = conversation_of(client, title="Original question")
    question = conversation.messages.get(role="user")

    response = client.post(
        f"/streaming-demo/messages/{question.pk}/edit", {"message": "Edited question"}
    )

    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    assert "Edited question" in html and '<span class="version-count">2/2</span>' in html
    assert Message.objects.filter(content="Original question").exists()


def test_a_failed_reply_offers_retry_and_delete(client, conversation_of):
    conversation = conversation_of(client, reply="", status="error", ended_reason="provider_error")

    html = client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()

    assert "↻ Retry" in html and 'class="delete-turn"' in html
    failed = conversation.messages.get(role="assistant")
    response = client.post(f"/streaming-demo/replies/{failed.pk}/delete", headers=HTMX)
    assert response.status_code == 200
    assert "msg-assistant" not in response.content.decode()


def test_a_refused_reply_says_not_billed(client, conversation_of):
    conversation = conversation_of(
        client, reply="", status="error", ended_reason="provider_error", usage_source="none"
    )

    html = client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()

    assert "Not billed" in html and "(est.)" not in html


def test_the_page_can_ask_for_a_generated_name_of_its_own_conversation_only(
    client, settings, conversation_of
):
    settings.CHAT_TITLE_MODEL = "openai:gpt-4.1-mini"
    conversation = conversation_of(client, title="First words")
    Conversation.objects.filter(pk=conversation.pk).update(title="A generated name")

    assert "data-title-model" in client.get(f"/streaming-demo/c/{conversation.pk}").content.decode()
    response = client.get(f"/streaming-demo/c/{conversation.pk}/title")
    assert response.json() == {"title": "A generated name"}
    assert Client().get(f"/streaming-demo/c/{conversation.pk}/title").status_code == 404
