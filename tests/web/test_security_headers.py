"""Security headers on what the app serves: the Content-Security-Policy on every kind of page,
and pages written so that the policy has nothing to block (the browser tests prove it runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.models import Conversation, Message
from chat.web.visitors import VISITOR_SESSION_KEY

pytestmark = pytest.mark.django_db

TABLE = "| a | b |\n| :-- | --: |\n| 1 | 2 |\n\n```python\nprint('hi')\n```"


def directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def assert_strict(response) -> None:
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:", "blob:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    header = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header


def assert_nothing_inline(html: str) -> None:
    """No inline script, no event-handler attribute, no style attribute or element: the markup
    needs nothing the policy refuses."""
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "event-handler attribute"
    assert not re.search(r"<[^>]+\sstyle\s*=", html), "style attribute"
    assert "<style" not in html
    assert "javascript:" not in html
    assert "hx-on" not in html


@pytest.fixture
def staff_client() -> Client:
    User.objects.create_superuser("staff", "staff@example.com", "pw-for-tests")
    client = Client()
    client.login(username="staff", password="pw-for-tests")  # noqa: S106
    return client


@pytest.fixture
def conversation_with_table() -> Conversation:
    conversation = Conversation.objects.create(visitor_id="v" * 32, title="Tables")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="a table")
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=TABLE,
        status=Message.Status.COMPLETE,
        ended_reason=Message.EndedReason.COMPLETED,
    )
    return conversation


@pytest.mark.parametrize("path", ["/streaming-demo", "/accounts/login/", "/admin/login/"])
def test_public_pages_send_the_strict_policy_and_need_nothing_it_refuses(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(response)
    assert_nothing_inline(response.content.decode())


def test_a_conversation_page_with_a_table_needs_nothing_the_policy_refuses(
    client, conversation_with_table
):
    session = client.session
    session[VISITOR_SESSION_KEY] = conversation_with_table.visitor_id
    session.save()
    response = client.get(f"/streaming-demo/c/{conversation_with_table.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    # markdown-it aligns columns with style attributes; ours become classes.
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">2</td>' in html
    assert_nothing_inline(html)


def test_admin_pages_send_the_strict_policy(staff_client, conversation_with_table):
    for path in (
        "/admin/",
        "/admin/chat/conversation/",
        f"/admin/chat/conversation/{conversation_with_table.pk}/change/",
        "/admin/chat/usagereport/",
    ):
        response = staff_client.get(path)
        assert response.status_code == 200, path
        assert_strict(response)
        html = response.content.decode()
        # Django's own admin markup is its business; ours (the transcript) must be clean.
        if "review-transcript" in html:
            transcript = html[html.index('class="review-transcript"') :]
            assert_nothing_inline(transcript.split("</section>", 1)[0])
            assert 'class="align-right"' in transcript


def test_error_pages_are_styled_and_send_the_policy(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_strict(missing)
    assert "There is nothing at this address" in missing.content.decode()
    assert_nothing_inline(missing.content.decode())

    csrf_client = Client(enforce_csrf_checks=True)
    refused = csrf_client.post("/accounts/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
    assert_strict(refused)
    # Django's own CSRF page has an inline <style>; ours has none.
    assert "The form had expired" in refused.content.decode()
    assert_nothing_inline(refused.content.decode())


@pytest.fixture
def settings_in_subprocess(repo):
    def settings_in_subprocess(**env: str) -> str:
        code = (
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; "
            "django.setup(); from django.conf import settings; "
            "print(bool(getattr(settings, 'CONTENT_SECURITY_POLICY', None)), "
            "bool(getattr(settings, 'CONTENT_SECURITY_POLICY_REPORT_ONLY', None)), "
            "(getattr(settings, 'CONTENT_SECURITY_POLICY', None) "
            "or settings.CONTENT_SECURITY_POLICY_REPORT_ONLY)['DIRECTIVES'].get('report-uri'))"
        )
        environment = {**os.environ, **env}
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=repo,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    return settings_in_subprocess


def test_report_only_and_a_report_uri_are_settings(settings_in_subprocess):
    assert settings_in_subprocess() == "True False None"
    assert (
        settings_in_subprocess(CHAT_CSP_REPORT_ONLY="true", CHAT_CSP_REPORT_URI="/csp-reports")
        == "False True ['/csp-reports']"
    )


def test_pages_say_nosniff_no_framing_and_a_referrer_policy(client):
    response = client.get("/streaming-demo")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # off unless configured


def test_production_https_settings_redirect_and_send_hsts(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    client = Client()
    plain = client.get("/streaming-demo")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/streaming-demo"
    assert client.get("/healthz").status_code == 200  # the load balancer's probe is not moved
    secure = client.get("/streaming-demo", secure=True)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )


def test_behind_a_proxy_its_https_header_counts_once_trusted(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert Client().get("/streaming-demo", HTTP_X_FORWARDED_PROTO="https").status_code == 200


def test_the_production_settings_come_from_the_environment(repo):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; "
        "django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_HSTS_PRELOAD, s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_REFERRER_POLICY)"
    )
    env = {
        **os.environ,
        "DJANGO_SECURE_SSL_REDIRECT": "true",
        "DJANGO_SECURE_HSTS_SECONDS": "63072000",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "DJANGO_SECURE_HSTS_PRELOAD": "true",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
        "DJANGO_SECURE_COOKIES": "true",
        "DJANGO_REFERRER_POLICY": "strict-origin-when-cross-origin",
    }
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert output == (
        "True 63072000 True True ('HTTP_X_FORWARDED_PROTO', 'https') True True "
        "strict-origin-when-cross-origin"
    )
