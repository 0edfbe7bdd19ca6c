"""The sign-in library's admin entries appear only with single sign-on configured, checked on the
real server (Daphne with `chatsite.asgi`, importing only what production imports): a test process
that imported the admin modules itself would prove nothing about start-up wiring."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import servers

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


def admin_index_as_staff(tmp_path, **overrides: str) -> str:
    env = servers.app_env(
        tmp_path,
        DJANGO_SUPERUSER_USERNAME="staff",
        DJANGO_SUPERUSER_EMAIL="staff@example.com",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        **overrides,
    )
    servers.migrate(env)
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=servers.REPO,
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )
    with servers.daphne(env, tmp_path / "daphne.log") as url:
        browser = servers.Browser()
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


def admin_links(page: str) -> set[str]:
    return set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', page))


def test_without_single_sign_on_the_admin_hides_the_sign_in_librarys_entries(tmp_path):
    links = admin_links(admin_index_as_staff(tmp_path))

    assert "/admin/chat/conversation/" in links  # the page is the real index
    assert links & SIGN_IN_ENTRIES == set()


def test_with_single_sign_on_the_admin_shows_the_sign_in_librarys_entries(tmp_path):
    links = admin_links(admin_index_as_staff(tmp_path, **SSO))

    assert "/admin/chat/conversation/" in links
    assert links >= SIGN_IN_ENTRIES
