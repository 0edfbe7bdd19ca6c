"""The sign-in library's admin entries appear only with single sign-on configured, checked on the
real server (Daphne with `chatsite.asgi`, importing only what production imports): a test process
that imported the admin modules itself would prove nothing about start-up wiring."""

from __future__ import annotations

import re

import pytest

PASSWORD = "sign-in-admin-password"
SSO = {
    "CHAT_OIDC_PROVIDER_NAME": "Keycloak",
    "CHAT_OIDC_CLIENT_ID": "chatsite",
    "CHAT_OIDC_CLIENT_SECRET": "s3cret",
    "CHAT_OIDC_SERVER_URL": "https://id.example.com/realms/main",
}
# The admin index lists each registered model by its admin URL.
SIGN_IN_ENTRIES = {
    "/admin/account/emailaddress/",
    "/admin/socialaccount/socialaccount/",
    "/admin/socialaccount/socialapp/",
    "/admin/socialaccount/socialtoken/",
}


@pytest.fixture
def admin_index_as_staff(tmp_path, app_env, migrate, create_superuser, daphne, browser_class):
    """`admin_index_as_staff(**settings)`: the admin index as a superuser sees it on a real server
    started with those settings."""

    def index(**overrides: str) -> str:
        env = app_env(tmp_path, **overrides)
        migrate(env)
        create_superuser(env, "staff", PASSWORD)
        with daphne(env, tmp_path / "daphne.log") as url:
            browser = browser_class()
            browser.get(f"{url}/admin/login/")
            status, page = browser.post(
                f"{url}/admin/login/?next=/admin/",
                {
                    "csrfmiddlewaretoken": browser.cookie("csrftoken"),
                    "username": "staff",
                    "password": PASSWORD,
                    "next": "/admin/",
                },
            )
            assert status == 200 and "Site administration" in page, page[:2000]
            return page

    return index


def admin_links(page: str) -> set[str]:
    return set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', page))


def test_without_single_sign_on_the_admin_hides_the_sign_in_librarys_entries(admin_index_as_staff):
    links = admin_links(admin_index_as_staff())

    assert "/admin/chat/conversation/" in links  # the page is the real index
    assert links & SIGN_IN_ENTRIES == set()


def test_with_single_sign_on_the_admin_shows_the_sign_in_librarys_entries(admin_index_as_staff):
    links = admin_links(admin_index_as_staff(**SSO))

    assert "/admin/chat/conversation/" in links
    assert links >= SIGN_IN_ENTRIES
