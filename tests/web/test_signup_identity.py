"""Who an account is: sign-up that does not say whether a username exists (in Django's words),
usernames normalised (NFKC) and refused when they mix scripts with look-alike letters, email
addresses unique, and a reset never mailed for two accounts at once (issue 18)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a long pass phrase 42"


@pytest.fixture
def signup_on(settings):
    settings.CHAT_SIGNUP = True
    settings.CHAT_SIGNUP_RATE_LIMIT = ""
    return settings


def sign_up(username: str, email: str = "", client: Client | None = None):
    return (client or Client()).post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_a_taken_username_gets_the_same_words_as_any_unusable_one(signup_on):
    User.objects.create_user("grace")

    taken = sign_up("GRACE")
    confusable = sign_up("gr\u0430ce")  # Cyrillic а

    assert taken.status_code == confusable.status_code == 400
    for response in (taken, confusable):
        page = response.content.decode()
        assert "already exists" not in page
        assert "This username can’t be used. Choose another." in page
    assert User.objects.count() == 1


def test_usernames_that_mix_scripts_with_look_alikes_are_refused(signup_on):
    for username in ("\u0430da", "ad\u0430", "p\u0430ypal"):
        assert sign_up(username).status_code == 400
    assert not User.objects.exists()


def test_usernames_in_one_script_and_nfkc_forms_are_fine(signup_on):
    assert sign_up("Иван").status_code == 302  # Cyrillic throughout: nothing to confuse
    assert sign_up("\uff47race").status_code == 302  # fullwidth ｇ: NFKC makes it "grace"
    assert set(User.objects.values_list("username", flat=True)) == {"Иван", "grace"}


def test_an_email_address_belongs_to_one_account(signup_on):
    assert sign_up("ada", "ada@example.com").status_code == 302

    again = sign_up("lovelace", "ADA@example.com")

    assert again.status_code == 400
    assert "This email address can’t be used" in again.content.decode()
    assert User.objects.filter(email__iexact="ada@example.com").count() == 1


def test_failed_sign_ups_count_toward_the_rate_limit(settings):
    # The trade-off: a taken name is refused, so a sign-up form can tell a guesser that a name
    # exists; every attempt, refused or not, counts toward CHAT_SIGNUP_RATE_LIMIT per IP.
    settings.CHAT_SIGNUP = True
    settings.CHAT_SIGNUP_RATE_LIMIT = "3/h"
    User.objects.create_user("grace")
    statuses = [sign_up(name).status_code for name in ("grace", "Grace", "GRACE", "gRace")]
    assert statuses == [400, 400, 400, 429]


def test_a_reset_for_an_address_two_accounts_share_mails_nobody(client, settings):
    settings.CHAT_EMAIL_ENABLED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Made before addresses were unique (or by staff in the admin).
    User.objects.create_user("ada", email="shared@example.com", password="old pass phrase 1")
    User.objects.create_user("bob", email="Shared@example.com", password="old pass phrase 2")
    User.objects.create_user("eve", email="eve@example.com", password="old pass phrase 3")

    shared = client.post("/accounts/password_reset/", {"email": "shared@example.com"})
    own = client.post("/accounts/password_reset/", {"email": "eve@example.com"})

    assert shared.status_code == own.status_code == 302  # the same answer either way
    assert [message.to for message in mail.outbox] == [["eve@example.com"]]
