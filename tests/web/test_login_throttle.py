"""Sign-in throttling on /accounts/login/ and /admin/login/: failures counted per username and
per client IP; past the limit every attempt, the right password included, is a 429."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-1"


@pytest.fixture(autouse=True)
def throttle_settings(settings):
    settings.CHAT_LOGIN_RATE_LIMIT = "10/15m"
    settings.CHAT_LOGIN_IP_RATE_LIMIT = "50/15m"
    # Hundreds of attempts: a fast hasher keeps the test quick (the throttle does not care).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    # The limiter's windows are fixed slices of time: a test running across the end of one
    # would see its counts start again. The clock stands still unless a test moves it.
    with time_machine.travel(timezone.now(), tick=False):
        yield
    cache.clear()


@pytest.fixture
def users() -> None:
    User.objects.create_superuser("alice", "alice@example.com", PASSWORD)
    User.objects.create_user("bob", "bob@example.com", PASSWORD)


def attempt(path: str, username: str, password: str, ip: str) -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=ip)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_thirty_wrong_passwords_then_the_right_one_is_refused(users, path):
    statuses = [attempt(path, "alice", f"wrong-{n}", "10.0.0.1")[1].status_code for n in range(30)]
    assert statuses == [200] * 10 + [429] * 20

    client, response = attempt(path, "alice", PASSWORD, "10.0.0.1")
    assert response.status_code == 429
    assert not signed_in(client)
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 15 * 60
    page = response.content.decode()
    # The wait is what is left of the limiter's window, which starts at a time of its own: in
    # seconds when under a minute and a half of it is left (the test used to expect minutes, and
    # failed whenever it ran in the window's last 90 s).
    words = re.search(r"Too many failed sign-in attempts\. Wait (\d+) (second|minute)s? and", page)
    assert words, page
    amount, unit = int(words.group(1)), words.group(2)
    assert amount == (wait if unit == "second" else round(wait / 60))
    assert 'class="auth"' in page  # the styled sign-in page, with its form
    assert 'name="password"' in page


def test_the_username_is_locked_from_every_address_but_others_are_not(users):
    for n in range(10):
        attempt("/accounts/login/", "alice", f"wrong-{n}", "10.0.0.1")

    # A guesser moving to another address still meets the username's count...
    assert attempt("/accounts/login/", "alice", PASSWORD, "10.0.0.2")[1].status_code == 429
    assert attempt("/accounts/login/", "ALICE", PASSWORD, "10.0.0.2")[1].status_code == 429
    # ...while another user signs in, from the same address or another.
    for ip in ("10.0.0.1", "10.0.0.2"):
        client, response = attempt("/accounts/login/", "bob", PASSWORD, ip)
        assert response.status_code == 302 and signed_in(client)


def test_one_address_trying_many_usernames_is_stopped(users):
    for n in range(50):
        attempt("/accounts/login/", f"guess-{n}", "wrong", "10.0.0.9")
    assert attempt("/accounts/login/", "bob", PASSWORD, "10.0.0.9")[1].status_code == 429
    client, response = attempt("/accounts/login/", "bob", PASSWORD, "10.0.0.10")
    assert response.status_code == 302 and signed_in(client)


def test_successful_sign_ins_use_up_nothing(users):
    for _ in range(15):
        client, response = attempt("/accounts/login/", "bob", PASSWORD, "10.0.0.1")
        assert response.status_code == 302 and signed_in(client)


def test_the_throttle_ends_with_its_window(users):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for n in range(10):
            attempt("/admin/login/", "alice", f"wrong-{n}", "10.0.0.1")
        assert attempt("/admin/login/", "alice", PASSWORD, "10.0.0.1")[1].status_code == 429
        traveller.shift(timedelta(minutes=16))
        client, response = attempt("/admin/login/", "alice", PASSWORD, "10.0.0.1")
        assert response.status_code == 302 and signed_in(client)


def test_the_sign_in_pages_still_show(users):
    for n in range(12):
        attempt("/accounts/login/", "alice", f"wrong-{n}", "10.0.0.1")
    assert Client(REMOTE_ADDR="10.0.0.1").get("/accounts/login/").status_code == 200
    assert Client(REMOTE_ADDR="10.0.0.1").get("/admin/login/").status_code == 200


def test_an_empty_limit_turns_the_throttle_off(users, settings):
    settings.CHAT_LOGIN_RATE_LIMIT = ""
    settings.CHAT_LOGIN_IP_RATE_LIMIT = ""
    for n in range(20):
        attempt("/accounts/login/", "alice", f"wrong-{n}", "10.0.0.1")
    assert attempt("/accounts/login/", "alice", PASSWORD, "10.0.0.1")[1].status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(users, settings):
    settings.CHAT_TRUSTED_PROXIES = ["127.0.0.1/32"]
    for n in range(50):
        Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7").post(
            "/accounts/login/", {"username": f"guess-{n}", "password": "wrong"}
        )
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    response = proxied.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 429
    # Another client behind the same proxy is not.
    other = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.8")
    response = other.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
