"""Accounts: styled sign-in and error pages, optional sign-up, password reset only with email,
single sign-on configuration, and a chat link opened without its session."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
import uuid

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.cache import cache
from django.test import Client

from chat.models import Conversation
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def with_email(settings):
    """As with EMAIL_URL set (the test runner's outbox stands in for the mail server)."""
    settings.CHAT_EMAIL_ENABLED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


def test_sign_in_page_is_styled_and_leads_back_to_the_chat(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'href="/static/chat/chat.css"' in html or "chat/chat.css" in html
    assert '<main class="auth"' in html
    assert "Back to the chat" in html
    assert 'name="username"' in html and 'name="password"' in html


def test_a_failed_sign_in_says_why(client):
    User.objects.create_user("ada", password="correct horse battery")
    response = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert 'class="errorlist"' in response.content.decode()
    assert "correct username and password" in response.content.decode()


def test_sign_up_is_off_by_default(client):
    assert client.get("/accounts/signup/").status_code == 404
    assert client.post("/accounts/signup/", {"username": "x"}).status_code == 404
    assert "Create an account" not in client.get("/accounts/login/").content.decode()
    assert User.objects.count() == 0


def test_sign_up_creates_a_normal_user_signed_in_with_the_browsers_chats(
    client, settings, page_visitor
):
    settings.CHAT_SIGNUP = True
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text="hi", model_choice="demo:demo"
    )
    assert "Create an account" in client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/signup/' in client.get("/streaming-demo").content.decode()

    response = client.post(
        "/accounts/signup/",
        {
            "username": "grace",
            "email": "grace@example.com",
            "password1": "a long pass phrase 42",
            "password2": "a long pass phrase 42",
            "next": f"/streaming-demo/c/{started.conversation.pk}",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == f"/streaming-demo/c/{started.conversation.pk}"
    user = User.objects.get(username="grace")
    assert not user.is_staff and not user.is_superuser and user.is_active
    assert user.email == "grace@example.com"
    assert client.get("/streaming-demo").context["user"] == user
    assert Conversation.objects.get(pk=started.conversation.pk).user == user


def test_sign_up_shows_field_errors(client, settings):
    settings.CHAT_SIGNUP = True
    response = client.post(
        "/accounts/signup/", {"username": "x", "password1": "short", "password2": "other"}
    )
    assert response.status_code == 400
    assert (
        "didn’t match" in response.content.decode() or "didn't match" in response.content.decode()
    )
    assert not User.objects.filter(username="x").exists()


def test_sign_up_shows_password_errors_under_password(client, settings):
    settings.CHAT_SIGNUP = True
    response = client.post(
        "/accounts/signup/", {"username": "sam", "password1": "short", "password2": "short"}
    )

    assert response.status_code == 400
    form = response.context["form"]
    assert any("too short" in error for error in form.errors["password1"])
    assert "password2" not in form.errors
    html = response.content.decode()
    # In the page too: the list sits between the Password label and its field.
    password_errors = html.index('id="id_password1_errors"')
    assert html.index('for="id_password1"') < password_errors < html.index('id="id_password1"')
    assert "too short" in html[password_errors : html.index('id="id_password1"')]


def test_sign_up_is_rate_limited_per_address(settings):
    settings.CHAT_SIGNUP = True
    settings.CHAT_SIGNUP_RATE_LIMIT = "2/h"
    statuses = []
    for n in range(3):
        response = Client().post(
            "/accounts/signup/",
            {
                "username": f"user{n}",
                "password1": "a long pass 4242",
                "password2": "a long pass 4242",
            },
        )
        statuses.append(response.status_code)
    assert statuses == [302, 302, 429]
    assert "Too many sign-ups" in response.content.decode()
    assert User.objects.count() == 2


def test_without_email_the_reset_link_is_hidden_and_its_pages_do_not_exist(client):
    assert "Forgot" not in client.get("/accounts/login/").content.decode()
    for url in (
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/reset/done/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post("/accounts/password_reset/", {"email": "a@b.c"}).status_code == 404
    assert mail.outbox == []


def test_with_email_a_password_reset_works_end_to_end(client, with_email):
    User.objects.create_user("ada", email="ada@example.com", password="old pass phrase 1")
    login_page = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/password_reset/"' in login_page

    response = client.post("/accounts/password_reset/", {"email": "ada@example.com"})
    assert response.status_code == 302
    assert "Check your email" in client.get(response["Location"]).content.decode()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)

    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "new pass phrase 2", "new_password2": "new pass phrase 2"},
        follow=True,
    )
    assert "Your password is changed" in done.content.decode()
    assert Client().login(username="ada", password="new pass phrase 2")


def test_unknown_pages_get_the_styled_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    html = response.content.decode()
    assert '<main class="auth"' in html and "chat/chat.css" in html
    assert "Back to the chat" in html


def test_a_chat_link_without_its_session_says_whose_it_is_and_offers_to_sign_in(
    client, page_visitor
):
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text="mine", model_choice="demo:demo"
    )
    path = f"/streaming-demo/c/{started.conversation.pk}"
    assert client.get(path).status_code == 200

    stranger = Client()
    response = stranger.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert "belongs to the browser or the account that started it" in html
    assert f'href="/accounts/login/?next={path}"' in html
    assert "mine" not in html  # nothing of the chat leaks

    # A chat that does not exist gets the very same page: ids cannot be probed.
    missing = f"/streaming-demo/c/{uuid.uuid4()}"
    other = stranger.get(missing).content.decode()

    def same(page: str, url: str) -> str:
        return re.sub(r'"X-CSRFToken": "\w+"', "", page.replace(url, ""))

    assert same(other, missing) == same(html, path)


def test_a_chat_link_in_another_account_says_so(client, page_visitor):
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text="mine", model_choice="demo:demo"
    )
    User.objects.create_user("bob", password="bob pass phrase 1")
    other = Client()
    other.login(username="bob", password="bob pass phrase 1")
    response = other.get(f"/streaming-demo/c/{started.conversation.pk}")
    assert response.status_code == 404
    assert "in the account <strong>bob</strong>" in response.content.decode()


@pytest.fixture
def settings_probe(repo, app_env):
    def settings_probe(tmp_path, **env: str) -> dict:
        """Load the real settings with `env` in a fresh interpreter (its own migrated database) and
        report what they made."""
        code = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.conf import settings
from django.test import RequestFactory
from allauth.socialaccount.adapter import get_adapter
from chat.web.accounts import account_options
apps = get_adapter().list_apps(RequestFactory().get("/"), provider="openid_connect")
print(json.dumps({
    "apps": [{"provider_id": a.provider_id, "name": a.name, "client_id": a.client_id,
              "server_url": a.settings.get("server_url")} for a in apps],
    "options": account_options(RequestFactory().get("/")),
    "form_action": settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"],
    "installed": "allauth.socialaccount.providers.openid_connect" in settings.INSTALLED_APPS,
    "email_backend": settings.EMAIL_BACKEND,
    "email_host": getattr(settings, "EMAIL_HOST", ""),
    "email_port": getattr(settings, "EMAIL_PORT", 0),
}))
"""
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=repo,
            env={**app_env(tmp_path, DJANGO_SETTINGS_MODULE="chatsite.settings"), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    return settings_probe


def test_single_sign_on_is_off_unless_configured(tmp_path, settings_probe):
    probe = settings_probe(tmp_path)
    assert probe["apps"] == []
    assert probe["options"]["sso_login_url"] is None
    assert probe["form_action"] == ["'self'"]
    assert probe["email_backend"] == "django.core.mail.backends.dummy.EmailBackend"


def test_oidc_settings_configure_allauths_provider_and_the_sign_in_button(tmp_path, settings_probe):
    probe = settings_probe(
        tmp_path,
        CHAT_OIDC_PROVIDER_NAME="Keycloak",
        CHAT_OIDC_CLIENT_ID="chatsite",
        CHAT_OIDC_CLIENT_SECRET="s3cret",
        CHAT_OIDC_SERVER_URL="https://id.example.com/realms/main",
        EMAIL_URL="smtp://mail.example.com:2525",
    )
    assert probe["installed"]
    assert probe["apps"] == [
        {
            "provider_id": "sso",
            "name": "Keycloak",
            "client_id": "chatsite",
            "server_url": "https://id.example.com/realms/main",
        }
    ]
    assert probe["options"]["sso_login_url"] == "/accounts/sso/oidc/sso/login/"
    assert probe["options"]["sso_name"] == "Keycloak"
    assert probe["form_action"] == ["'self'", "https://id.example.com"]
    assert probe["options"]["password_reset_enabled"] is True
    assert probe["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (probe["email_host"], probe["email_port"]) == ("mail.example.com", 2525)


def test_the_sign_in_page_shows_the_single_sign_on_button_when_configured(client, settings):
    settings.CHAT_OIDC_ENABLED = True
    settings.CHAT_OIDC_PROVIDER_NAME = "Keycloak"
    html = client.get("/accounts/login/").content.decode()
    assert 'action="/accounts/sso/oidc/sso/login/"' in html
    assert "Sign in with Keycloak" in html
    settings.CHAT_OIDC_ENABLED = False
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()


def test_single_sign_on_through_a_fake_oidc_issuer_signs_in_a_new_user_with_the_browsers_chats(
    client, settings, fake_issuer, page_visitor
):
    started = services.reply_start(
        visitor=page_visitor(client), conversation_id=None, text="hi", model_choice="demo:demo"
    )
    with fake_issuer() as issuer:
        settings.CHAT_OIDC_ENABLED = True
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "sso",
                        "name": "Fake IdP",
                        "client_id": "chatsite-client",
                        "secret": "chatsite-secret",
                        "settings": {"server_url": issuer.base_url},
                    }
                ]
            }
        }
        # The sign-in button posts; the site sends the browser to the issuer.
        response = client.post("/accounts/sso/oidc/sso/login/", {"next": "/streaming-demo"})
        assert response.status_code == 302
        authorize = urllib.parse.urlsplit(response["Location"])
        assert f"{authorize.scheme}://{authorize.netloc}" == issuer.base_url
        assert authorize.path == "/authorize"
        query = dict(urllib.parse.parse_qsl(authorize.query))
        assert query["client_id"] == "chatsite-client"
        assert query["response_type"] == "code"
        assert "openid" in query["scope"].split()

        # The issuer sends the browser back with a code; the site exchanges it and asks who it is.
        callback = urllib.parse.urlsplit(query["redirect_uri"])
        assert callback.path == "/accounts/sso/oidc/sso/login/callback/"
        response = client.get(callback.path, {"code": issuer.code, "state": query["state"]})

    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"] == "/streaming-demo"
    assert issuer.token_requests[0]["code"] == issuer.code
    assert issuer.userinfo_requests == [f"Bearer {issuer.access_token}"]
    user = User.objects.get(email="sso.user@example.com")
    assert not user.is_staff and not user.is_superuser
    assert client.get("/streaming-demo").context["user"] == user
    assert Conversation.objects.get(pk=started.conversation.pk).user == user


def test_single_sign_on_with_a_forged_state_is_refused_on_a_styled_page(
    client, settings, fake_issuer
):
    with fake_issuer() as issuer:
        settings.CHAT_OIDC_ENABLED = True
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "sso",
                        "name": "Fake IdP",
                        "client_id": "chatsite-client",
                        "secret": "chatsite-secret",
                        "settings": {"server_url": issuer.base_url},
                    }
                ]
            }
        }
        client.post("/accounts/sso/oidc/sso/login/")
        response = client.get(
            "/accounts/sso/oidc/sso/login/callback/", {"code": issuer.code, "state": "forged"}
        )
    html = response.content.decode()
    assert "Single sign-on did not work" in html
    assert User.objects.count() == 0
    assert issuer.token_requests == []


def test_password_reset_mail_goes_out_through_a_real_smtp_server(client, settings, free_port):
    """The reset email over SMTP to a local sink (aiosmtpd), as with EMAIL_URL=smtp://…"""
    from aiosmtpd.controller import Controller

    received: list[str] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            received.append(envelope.content.decode())
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.CHAT_EMAIL_ENABLED = True
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = False
        User.objects.create_user("ada", email="ada@example.com", password="old pass phrase 1")
        response = client.post("/accounts/password_reset/", {"email": "ada@example.com"})
    finally:
        controller.stop()
    assert response.status_code == 302
    assert len(received) == 1
    assert "To: ada@example.com" in received[0]
    assert "Subject: Reset your chatsite password" in received[0]
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", received[0]).group(1)
    assert "Choose a new password" in client.get(link, follow=True).content.decode()
