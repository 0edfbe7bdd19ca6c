from __future__ import annotations

import csv
import datetime
import io
import json
import re
import uuid

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

LIST_URL = reverse("admin:chat_conversation_changelist")
UTC = datetime.UTC


def change_url(conversation: Conversation) -> str:
    return reverse("admin:chat_conversation_change", args=[conversation.pk])


def make_conversation(
    *, user=None, visitor_id="", title="A chat", provider="openai", model="gpt-4.1-mini", **fields
) -> Conversation:
    if user is None and not visitor_id:
        visitor_id = uuid.uuid4().hex
    return Conversation.objects.create(
        user=user, visitor_id=visitor_id, title=title, provider=provider, model=model, **fields
    )


def exchange(conversation: Conversation, question: str, answer: str = "Fine.", **reply) -> Message:
    """A user message and a finished assistant reply (fields in `reply`), totals refreshed."""
    Message.objects.create(conversation=conversation, role="user", content=question)
    fields = {
        "status": "complete",
        "ended_reason": "completed",
        "provider": conversation.provider,
        "model": conversation.model,
        "input_tokens": 10,
        "output_tokens": 20,
        "usage_source": "provider",
        "cost_microusd": 100,
        "price_version": "genai-prices 0.0.40",
        "ttft_ms": 300,
        "duration_ms": 1200,
        "tokens_per_second": 25.0,
        **reply,
    }
    message = Message.objects.create(
        conversation=conversation, role="assistant", content=answer, **fields
    )
    conversation.refresh_totals()
    return message


def listed(html: str) -> set[str]:
    """Ids of the conversations in a changelist page."""
    return set(re.findall(r'name="_selected_action" value="([0-9a-f-]{36})"', html))


def get_list(client, query: str = "") -> str:
    response = client.get(f"{LIST_URL}{query}")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # `admin_client` signs in a superuser with a password; the default hasher takes ~0.5 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", "alice@example.com")


# --- Access ----------------------------------------------------------------------------------


def test_staff_see_the_list_with_key_figures(admin_client, alice):
    chat = make_conversation(user=alice, title="Tax question")
    exchange(chat, "Hi", input_tokens=1200, output_tokens=340, cost_microusd=1234)
    exchange(chat, "More", ended_reason="stopped", status="stopped", cost_microusd=None)

    html = get_list(admin_client)

    assert "Tax question" in html and change_url(chat) in html
    assert ">alice</a>" in html and "?owner=user%3A" in html
    assert 'title="openai:gpt-4.1-mini">gpt-4.1-mini</span>' in html
    assert 'title="Tax question">Tax question</span>' in html  # cut to one line, whole on hover
    assert "1,210&nbsp;in<br>360&nbsp;out" in html
    assert "$0.0012" in html and "+1 unpriced" in html
    assert 'review-badge-stopped">Stopped by user' in html
    assert 'review-badge-completed">Completed' in html
    assert '<td class="field-messages_display">4</td>' in html


def test_each_ended_reason_shows_once(admin_client):
    chat = make_conversation()
    exchange(chat, "a")
    exchange(chat, "b")
    exchange(chat, "c", ended_reason="timeout", status="error")

    html = get_list(admin_client)

    assert html.count('review-badge-completed">Completed') == 1
    assert html.index("review-badge-timeout") < html.index("review-badge-completed")


def test_anonymous_owner_shows_the_start_of_the_visitor_id(admin_client):
    make_conversation(visitor_id="abcdef1234567890")

    html = get_list(admin_client)

    assert "anonymous · abcdef12" in html
    assert "?owner=visitor%3Aabcdef1234567890" in html


def test_staff_see_the_review_page(admin_client, alice):
    chat = make_conversation(user=alice, title="Tax question", system_prompt="Be <terse>.")
    exchange(chat, "Hi", input_tokens=1200, output_tokens=340, cost_microusd=1234)

    response = admin_client.get(change_url(chat))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Review conversation" in html
    assert 'data-figure="messages">2<' in html
    assert 'data-figure="input-tokens">1,200<' in html
    assert 'data-figure="cost">$0.0012<' in html
    assert "Be &lt;terse&gt;." in html
    assert 'name="review_note"' in html and 'name="flagged"' in html
    assert 'name="title"' not in html  # nothing else is a form field


@pytest.mark.parametrize("page", ["list", "change"])
def test_non_staff_users_are_sent_to_the_admin_login(client, alice, page):
    chat = make_conversation(user=alice)
    client.force_login(alice)  # is_staff=False

    url = LIST_URL if page == "list" else change_url(chat)
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("page", ["list", "change"])
def test_anonymous_visitors_are_sent_to_the_admin_login(client, page):
    chat = make_conversation()

    response = client.get(LIST_URL if page == "list" else change_url(chat))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_with_view_permission_only_cannot_save_or_flag(client):
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(viewer)
    chat = make_conversation(title="Look only")

    assert "Look only" in get_list(client)
    html = client.get(change_url(chat)).content.decode()
    assert 'name="review_note"' not in html and 'name="_save"' not in html
    assert 'value="flag_selected"' not in get_list(client)
    response = client.post(change_url(chat), {"flagged": "on", "review_note": "x"})
    assert response.status_code == 403


def test_conversations_cannot_be_added(admin_client):
    response = admin_client.get(reverse("admin:chat_conversation_add"))

    assert response.status_code == 403


# --- The transcript --------------------------------------------------------------------------


def test_transcript_renders_markdown_and_reply_stats(admin_client):
    chat = make_conversation()
    exchange(
        chat,
        "Stats please",
        answer="**Done**\n\n- one\n- two",
        input_tokens=12,
        output_tokens=34,
        usage_source="estimated",
        cost_microusd=1234,
        ttft_ms=420,
        tokens_per_second=31.5,
        ended_reason="timeout",
        status="error",
        error_text="The provider took too long.",
    )

    html = admin_client.get(change_url(chat)).content.decode()

    assert "<strong>Done</strong>" in html and "<li>one</li>" in html
    for figure in (
        "0.42 s to first token",
        "31.5 tok/s",
        "12 in · 34 out (est.)",
        "$0.0012",
        'review-badge-timeout">Timeout',
        "The provider took too long.",
        "openai:gpt-4.1-mini",
    ):
        assert figure in html
    assert html.index('data-role="user"') < html.index('data-role="assistant"')


def test_transcript_escapes_html_in_user_text(admin_client):
    chat = make_conversation(title="<b>bold title</b>")
    exchange(chat, "<script>alert(1)</script> **not markdown**", answer="<img src=x onerror=1>")

    html = admin_client.get(change_url(chat)).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; **not markdown**" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=1&gt;" in html
    assert "<b>bold title</b>" not in html


def test_transcript_shows_replaced_replies_dimmed_and_unpriced_ones(admin_client):
    chat = make_conversation()
    old = exchange(chat, "Q", answer="First try")
    Message.objects.filter(pk=old.pk).update(superseded=True)
    Message.objects.create(
        conversation=chat, role="assistant", content="Second try", status="complete",
        ended_reason="completed", model="gpt-4.1-mini", cost_microusd=None,
    )  # fmt: skip
    chat.refresh_totals()

    html = admin_client.get(change_url(chat)).content.decode()

    replaced = re.search(
        r'<article class="review-msg review-msg-assistant is-superseded"[^>]*>', html
    )
    assert replaced and f'id="msg-{old.pk}"' in replaced.group(0)
    assert ">other version</span>" in html
    assert html.index("First try") < html.index("Second try")
    assert "no price" in html
    assert 'data-figure="unpriced">1<' in html


def test_review_page_queries_do_not_grow_with_messages(admin_client):
    def queries_for(count: int) -> int:
        chat = make_conversation()
        for n in range(count):
            exchange(chat, f"Question {n}")
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(change_url(chat)).status_code == 200
        return len(queries)

    assert queries_for(1) == queries_for(12)


# --- Editing: the flag and the note only -----------------------------------------------------


def test_flag_and_note_are_saved_but_content_is_not(admin_client):
    chat = make_conversation(title="Original")
    reply = exchange(chat, "Question", answer="Answer", cost_microusd=500)

    response = admin_client.post(
        change_url(chat),
        {
            "flagged": "on",
            "review_note": "Looks like abuse.",
            "title": "Hacked",
            "system_prompt": "Hacked",
            "cost_microusd": "0",
            "message_count": "0",
            "messages-0-content": "Hacked",
        },
    )

    assert response.status_code == 302
    chat.refresh_from_db()
    assert chat.flagged and chat.review_note == "Looks like abuse."
    assert chat.title == "Original" and chat.system_prompt == ""
    assert chat.cost_microusd == 500 and chat.message_count == 2
    reply.refresh_from_db()
    assert reply.content == "Answer"


def test_saving_a_review_keeps_totals_that_changed_meanwhile(admin_client):
    chat = make_conversation()
    exchange(chat, "Question")
    chat.refresh_from_db()
    # A reply ends between opening the page and saving it.
    Conversation.objects.filter(pk=chat.pk).update(message_count=4, output_tokens=999)

    admin_client.post(change_url(chat), {"review_note": "ok"})

    chat.refresh_from_db()
    assert chat.review_note == "ok" and chat.message_count == 4 and chat.output_tokens == 999


def test_flag_and_unflag_actions(admin_client):
    first, second, third = make_conversation(), make_conversation(), make_conversation()

    admin_client.post(
        LIST_URL, {"action": "flag_selected", "_selected_action": [first.pk, second.pk]}
    )
    assert set(Conversation.objects.filter(flagged=True)) == {first, second}

    admin_client.post(LIST_URL, {"action": "unflag_selected", "_selected_action": [first.pk]})
    assert set(Conversation.objects.filter(flagged=True)) == {second}
    assert not Conversation.objects.get(pk=third.pk).flagged


# --- Filters and search ----------------------------------------------------------------------


def test_owner_filter(admin_client, alice):
    bob = User.objects.create_user("bob")
    mine, bobs = make_conversation(user=alice), make_conversation(user=bob)
    visitor = make_conversation(visitor_id="feedface" * 4)
    other_visitor = make_conversation()

    assert listed(get_list(admin_client, f"?owner=user:{alice.pk}")) == {str(mine.pk)}
    assert listed(get_list(admin_client, f"?owner=visitor:{'feedface' * 4}")) == {str(visitor.pk)}
    assert listed(get_list(admin_client, "?owner=signed-in")) == {str(mine.pk), str(bobs.pk)}
    assert listed(get_list(admin_client, "?owner=anonymous")) == {
        str(visitor.pk),
        str(other_visitor.pk),
    }
    assert listed(get_list(admin_client, "?owner=user:nonsense")) == set()


def test_owner_filter_shows_the_chosen_owner_and_lists_no_users(admin_client, alice):
    User.objects.create_user("carol")
    make_conversation(user=alice)

    html = get_list(admin_client, f"?owner=user:{alice.pk}")
    assert re.search(r'<li class="selected">\s*<a href="[^"]*">alice</a>', html)
    assert "carol" not in html

    html = get_list(admin_client, "?owner=visitor:0123456789abcdef")
    assert re.search(r'<li class="selected">\s*<a href="[^"]*">visitor 01234567…</a>', html)
    assert "Signed-in users" in html and "Anonymous visitors" in html


def test_last_activity_range_is_inclusive_in_the_site_time_zone(admin_client, settings):
    settings.TIME_ZONE = "Europe/Paris"  # UTC+1 in March
    at = {
        "early": datetime.datetime(2026, 3, 9, 22, 59, tzinfo=UTC),  # 9 March, 23:59 Paris
        "first": datetime.datetime(2026, 3, 9, 23, 0, tzinfo=UTC),  # 10 March, 00:00 Paris
        "last": datetime.datetime(2026, 3, 11, 22, 59, tzinfo=UTC),  # 11 March, 23:59 Paris
        "late": datetime.datetime(2026, 3, 11, 23, 0, tzinfo=UTC),  # 12 March, 00:00 Paris
    }
    ids = {name: str(make_conversation(updated_at=moment).pk) for name, moment in at.items()}

    both = "?active_from=2026-03-10&active_to=2026-03-11"
    assert listed(get_list(admin_client, both)) == {ids["first"], ids["last"]}
    assert listed(get_list(admin_client, "?active_from=2026-03-10")) == {
        ids["first"],
        ids["last"],
        ids["late"],
    }
    assert listed(get_list(admin_client, "?active_to=2026-03-11")) == {
        ids["early"],
        ids["first"],
        ids["last"],
    }
    assert listed(get_list(admin_client, "?active_from=&active_to=")) == set(ids.values())


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?active_from=2026-13-01", "Enter a date as YYYY-MM-DD"),
        ("?active_to=yesterday", "Enter a date as YYYY-MM-DD"),
        ("?active_from=2026-03-11&active_to=2026-03-10", "The start date is after the end date."),
        ("?active_to=9999-12-31", "Ensure this value is less than or equal to 9998-12-31."),
    ],
)
def test_a_malformed_date_range_is_explained_not_a_server_error(admin_client, query, error):
    make_conversation()

    html = get_list(admin_client, query)

    assert error in html
    assert "Last activity filter:" in html  # the message at the top of the page
    assert listed(html) == set()


def test_date_range_form_keeps_the_other_filters(admin_client):
    make_conversation()

    html = get_list(admin_client, "?flagged__exact=1&q=hello&active_from=2026-01-02")

    form = html[html.index('class="review-range-filter"') :]
    form = form[: form.index("</form>")]
    assert '<input type="hidden" name="flagged__exact" value="1">' in form
    assert '<input type="hidden" name="q" value="hello">' in form
    assert 'name="active_from"' in form and 'value="2026-01-02"' in form
    assert 'type="hidden" name="active_from"' not in form


def test_ended_reason_filter_uses_any_reply_of_the_conversation(admin_client):
    stopped = make_conversation()
    exchange(stopped, "a")
    exchange(stopped, "b", ended_reason="stopped", status="stopped")
    completed = make_conversation()
    exchange(completed, "c")
    failed = make_conversation()
    exchange(failed, "d", ended_reason="provider_error", status="error")

    assert listed(get_list(admin_client, "?ended_reason=stopped")) == {str(stopped.pk)}
    assert listed(get_list(admin_client, "?ended_reason=completed")) == {
        str(stopped.pk),
        str(completed.pk),
    }
    assert listed(get_list(admin_client, "?ended_reason=provider_error")) == {str(failed.pk)}
    assert listed(get_list(admin_client, "?ended_reason=error")) == set()  # no partial matches


def test_no_ended_reason_lies_inside_another():
    # The ended-reason filter matches a substring of the stored comma-joined list.
    reasons = Message.EndedReason.values
    assert not [(a, b) for a in reasons for b in reasons if a != b and a in b]


def test_model_and_provider_filters(admin_client):
    mini = make_conversation(provider="openai", model="gpt-4.1-mini")
    haiku = make_conversation(provider="anthropic", model="claude-haiku-4-5")
    demo = make_conversation(provider="demo", model="demo")

    html = get_list(admin_client)
    for choice in ("?model__exact=gpt-4.1-mini", "?model__exact=claude-haiku-4-5"):
        assert choice in html
    for choice in ("?provider__exact=anthropic", "?provider__exact=demo"):
        assert choice in html

    assert listed(get_list(admin_client, "?model__exact=claude-haiku-4-5")) == {str(haiku.pk)}
    assert listed(get_list(admin_client, "?provider__exact=openai")) == {str(mini.pk)}
    html = get_list(admin_client, "?provider__exact=demo&model__exact=demo")
    assert listed(html) == {str(demo.pk)}
    assert "model__exact=gpt-4.1-mini" not in html  # models narrowed to the chosen provider


def test_flagged_filter(admin_client):
    flagged = make_conversation(flagged=True)
    make_conversation()

    html = get_list(admin_client, "?flagged__exact=1")
    assert listed(html) == {str(flagged.pk)}
    assert html.count("⚑ Flagged") == 1


def test_filters_combine(admin_client, alice):
    wanted = make_conversation(user=alice, flagged=True)
    exchange(wanted, "x", ended_reason="budget", status="stopped")
    other = make_conversation(user=alice)
    exchange(other, "y", ended_reason="budget", status="stopped")

    query = f"?owner=user:{alice.pk}&ended_reason=budget&flagged__exact=1&model__exact=gpt-4.1-mini"
    assert listed(get_list(admin_client, query)) == {str(wanted.pk)}


def test_search_finds_message_text_title_and_user(admin_client, alice):
    by_text = make_conversation()
    exchange(by_text, "What about the walrus?", answer="The walrus said nothing.")
    by_title = make_conversation(title="Walrus facts")
    by_user = make_conversation(user=alice)
    make_conversation(title="Unrelated")

    html = get_list(admin_client, "?q=walrus")
    assert listed(html) == {str(by_text.pk), str(by_title.pk)}
    assert html.count(f'value="{by_text.pk}"') == 1  # two matching messages, one row
    assert listed(get_list(admin_client, "?q=alice@example")) == {str(by_user.pk)}
    assert listed(get_list(admin_client, "?q=walrus+nothing")) == {str(by_text.pk)}
    assert listed(get_list(admin_client, f"?q={by_user.pk}")) == {str(by_user.pk)}


# --- Exports ---------------------------------------------------------------------------------


@pytest.fixture
def exported(alice):
    """Three conversations; the first two have messages with every figure set."""
    first = make_conversation(user=alice, title="First", review_note="Checked", flagged=True)
    exchange(
        first,
        'Hello, with "quotes", commas\nand lines',
        answer="**Hi**",
        input_tokens=12,
        output_tokens=34,
        cached_input_tokens=5,
        cost_microusd=1234,
        tokens_per_second=31.5,
    )
    second = make_conversation(visitor_id="cafe" * 8, title="Second", provider="demo", model="demo")
    exchange(second, "Q", answer="", ended_reason="stopped", status="stopped", cost_microusd=None,
             usage_source="estimated")  # fmt: skip
    third = make_conversation(title="Third")
    return first, second, third


def export(client, action: str, query: str = "", **data) -> tuple[str, bytes]:
    response = client.post(f"{LIST_URL}{query}", {"action": action, **data})
    assert response.status_code == 200 and response.streaming
    return response["Content-Disposition"], b"".join(response.streaming_content)


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


@time_machine.travel(datetime.datetime(2026, 11, 21, 12, tzinfo=UTC))
def test_csv_export_has_one_row_per_message_of_exactly_the_selected(admin_client, exported):
    first, second, third = exported

    disposition, body = export(admin_client, "export_csv", _selected_action=[first.pk, second.pk])

    assert disposition == 'attachment; filename="conversations-2026-11-21.csv"'
    rows = csv_rows(body)
    assert {row["conversation_id"] for row in rows} == {str(first.pk), str(second.pk)}
    assert len(rows) == 4
    question, answer = (row for row in rows if row["conversation_id"] == str(first.pk))
    assert question["content"] == 'Hello, with "quotes", commas\nand lines'
    assert question["role"] == "user" and question["cost_usd"] == ""
    assert answer == answer | {
        "title": "First",
        "owner": "alice",
        "conversation_provider": "openai",
        "conversation_model": "gpt-4.1-mini",
        "flagged": "true",
        "review_note": "Checked",
        "role": "assistant",
        "status": "complete",
        "ended_reason": "completed",
        "superseded": "false",
        "input_tokens": "12",
        "output_tokens": "34",
        "cached_input_tokens": "5",
        "usage_source": "provider",
        "cost_usd": "0.001234",
        "price_version": "genai-prices 0.0.40",
        "ttft_ms": "300",
        "tokens_per_second": "31.5",
        "content": "**Hi**",
    }
    assert int(answer["message_id"]) > int(question["message_id"])
    assert datetime.datetime.fromisoformat(answer["created_at"]).tzinfo is not None
    unpriced = [row for row in rows if row["conversation_id"] == str(second.pk)][1]
    assert unpriced["owner"] == f"visitor:{'cafe' * 8}"
    assert unpriced["cost_usd"] == "" and unpriced["usage_source"] == "estimated"


def test_csv_export_of_all_across_pages_keeps_the_filters(admin_client, exported):
    first, second, third = exported

    # The page's rows are selected too: "select all" is offered once they are.
    _, body = export(admin_client, "export_csv", select_across="1", _selected_action=[first.pk])
    rows = csv_rows(body)
    assert {row["conversation_id"] for row in rows} == {str(c.pk) for c in exported}
    empty = next(row for row in rows if row["conversation_id"] == str(third.pk))
    assert empty["title"] == "Third" and empty["message_id"] == ""  # listed without messages

    _, body = export(
        admin_client,
        "export_csv",
        "?owner=anonymous",
        select_across="1",
        _selected_action=[third.pk],
    )
    assert {row["conversation_id"] for row in csv_rows(body)} == {str(second.pk), str(third.pk)}


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(admin_client):
    chat = make_conversation(title='=HYPERLINK("http://evil")')
    exchange(chat, "@SUM(A1)", answer="- a list")

    _, body = export(admin_client, "export_csv", _selected_action=[chat.pk])

    rows = csv_rows(body)
    assert rows[0]["title"] == '\'=HYPERLINK("http://evil")'
    assert [row["content"] for row in rows] == ["'@SUM(A1)", "'- a list"]


def test_jsonl_export_has_one_line_per_selected_conversation(admin_client, exported):
    first, second, third = exported

    disposition, body = export(admin_client, "export_jsonl", _selected_action=[first.pk, third.pk])

    assert disposition.endswith('.jsonl"')
    lines = body.decode().splitlines()
    assert len(lines) == 2
    records = {record["id"]: record for record in map(json.loads, lines)}
    assert set(records) == {str(first.pk), str(third.pk)}
    record = records[str(first.pk)]
    assert record | {"messages": None} == record | {
        "title": "First",
        "owner": "alice",
        "user_id": first.user_id,
        "flagged": True,
        "review_note": "Checked",
        "message_count": 2,
        "input_tokens": 12,
        "output_tokens": 34,
        "cost_usd": "0.001234",
        "ended_reasons": ["completed"],
        "messages": None,
    }
    question, answer = record["messages"]
    assert question["role"] == "user" and question["content"].startswith("Hello")
    assert (
        answer
        | {
            "content": "**Hi**",
            "cost_usd": "0.001234",
            "ttft_ms": 300,
            "tokens_per_second": 31.5,
            "usage_source": "provider",
            "superseded": False,
        }
        == answer
    )
    assert records[str(third.pk)]["messages"] == []


def test_csv_and_jsonl_exports_carry_the_owners_feedback(admin_client):
    chat = make_conversation(title="Rated")
    rated_at = datetime.datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    good = exchange(chat, "One", answer="Good answer", feedback=1, feedback_at=rated_at)
    bad = exchange(
        chat,
        "Two",
        answer="Bad answer",
        feedback=-1,
        feedback_comment="=wrong",
        feedback_at=rated_at,
    )
    unrated = exchange(chat, "Three", answer="Unrated")

    _, body = export(admin_client, "export_csv", _selected_action=[chat.pk])
    rows = {row["message_id"]: row for row in csv_rows(body)}
    assert rows[str(good.pk)]["feedback"] == "good"
    assert rows[str(good.pk)]["feedback_at"] == rated_at.isoformat()
    # A comment is the owner's text: neutralised for spreadsheets like the content.
    assert (rows[str(bad.pk)]["feedback"], rows[str(bad.pk)]["feedback_comment"]) == (
        "bad",
        "'=wrong",
    )
    assert rows[str(unrated.pk)]["feedback"] == rows[str(unrated.pk)]["feedback_at"] == ""

    _, body = export(admin_client, "export_jsonl", _selected_action=[chat.pk])
    messages = {m["id"]: m for m in json.loads(body.decode())["messages"]}
    assert messages[bad.pk] | {"feedback": "bad", "feedback_comment": "=wrong"} == messages[bad.pk]
    assert messages[good.pk]["feedback_at"] == rated_at.isoformat()
    assert messages[unrated.pk]["feedback"] is None


def test_jsonl_export_of_all_matching_a_search(admin_client, exported):
    first, second, third = exported

    _, body = export(
        admin_client, "export_jsonl", "?q=quotes", select_across="1", _selected_action=[first.pk]
    )

    assert [json.loads(line)["id"] for line in body.decode().splitlines()] == [str(first.pk)]


@pytest.mark.django_db(transaction=True)
async def test_exports_stream_under_asgi(async_client, settings):
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup() -> list[str]:
        admin = User.objects.create_superuser("root", "root@example.com")
        chats = [make_conversation(title=f"Chat {n}") for n in range(3)]
        for chat in chats:
            exchange(chat, "Q")
        return [admin, [str(chat.pk) for chat in chats]]

    admin, ids = await setup()
    await async_client.aforce_login(admin)

    response = await async_client.post(
        LIST_URL, {"action": "export_jsonl", "select_across": "1", "_selected_action": ids[:1]}
    )

    assert response.is_async  # streamed, not read into a list first
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert sorted(json.loads(line)["id"] for line in body.decode().splitlines()) == sorted(ids)


# --- Query counts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?owner=signed-in",
        "?owner=user:{user}",
        "?ended_reason=stopped&flagged__exact=0",
        "?active_from=2020-01-01&active_to=2099-12-31",
        "?provider__exact=openai&model__exact=gpt-4.1-mini",
        "?q=hello",
        "?o=5",  # by cost
    ],
)
def test_list_queries_do_not_grow_with_rows(admin_client, alice, query):
    def queries_for(count: int) -> int:
        for n in range(count):
            owner = {"user": alice} if n % 2 else {}
            chat = make_conversation(title=f"hello {n}", **owner)
            exchange(chat, "hello", ended_reason="stopped" if n % 3 else "completed")
        with CaptureQueriesContext(connection) as queries:
            html = get_list(admin_client, query.format(user=alice.pk))
        assert listed(html)
        return len(queries)

    assert queries_for(3) == queries_for(27)
