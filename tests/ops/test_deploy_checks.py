"""`manage.py check --deploy` tells the truth about the settings (issue 18).

The middleware Daphne runs is Django's security, CSRF, session and clickjacking middleware with
their hooks run inline (chatsite/serving/inline_middleware.py). Django's deploy checks look for
Django's own dotted paths; before, they reported the middleware missing (W001, W002, W003, W010)
and skipped every check that depends on it (HSTS, SSL redirect, secure cookies).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.module_loading import import_string


@pytest.fixture
def deploy_warnings(repo, app_env):
    def warnings(data_dir: Path, **overrides: str) -> list[str]:
        """The ids `check --deploy` prints, with the process's exit status checked."""
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
            cwd=repo,
            env=app_env(data_dir, **overrides),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return sorted(re.findall(r"\(([a-z_]+\.[WE]\d+)\)", result.stdout + result.stderr))

    return warnings


# README, "Production" and "What to set in production": the settings a deployment sets.
PRODUCTION = {
    "DJANGO_SECRET_KEY": "a-production-secret-of-fifty-characters-or-more-0123456789",
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_SECURE_COOKIES": "true",
    "CHAT_TRUSTED_PROXIES": "127.0.0.1",
    "DATABASE_URL": "postgres://chat:secret@db-host/chat",
    "REDIS_URL": "redis://redis-host:6379/0",
}


def test_check_deploy_with_the_default_settings_reports_what_is_really_missing(
    tmp_path, deploy_warnings
):
    assert deploy_warnings(tmp_path) == [
        "security.W004",  # no HSTS
        "security.W008",  # no SSL redirect
        "security.W012",  # session cookie not Secure (with the session middleware installed)
        "security.W016",  # CSRF cookie not Secure
    ]


def test_check_deploy_with_the_readmes_production_settings_reports_nothing(
    tmp_path, deploy_warnings
):
    assert deploy_warnings(tmp_path, **PRODUCTION) == []


def test_check_deploy_still_reports_a_middleware_that_is_really_missing(
    tmp_path, deploy_warnings, repo
):
    # The settings module reads no variable for its middleware: drop one through a settings
    # module of the test's own, which imports the real one.
    module = tmp_path / "settings_without_csrf.py"
    module.write_text(
        "from chatsite.settings import *  # noqa\n"
        "from chatsite.settings import MIDDLEWARE\n"
        "MIDDLEWARE = type(MIDDLEWARE)(m for m in MIDDLEWARE if 'Csrf' not in m)\n"
    )
    warnings = deploy_warnings(
        tmp_path,
        DJANGO_SETTINGS_MODULE="settings_without_csrf",
        PYTHONPATH=f"{tmp_path}:{repo}",
        **PRODUCTION,
    )
    assert warnings == ["security.W003"]


@pytest.mark.parametrize(
    "django_path",
    [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.middleware.common.CommonMiddleware",
        "csp.middleware.CSPMiddleware",
    ],
)
def test_the_middleware_list_counts_each_adapted_django_middleware_as_installed(django_path):
    assert django_path in settings.MIDDLEWARE
    # ... because a class in the list really is that middleware.
    wanted = import_string(django_path)
    assert any(issubclass(import_string(path), wanted) for path in settings.MIDDLEWARE)
    assert "django.middleware.gzip.GZipMiddleware" not in settings.MIDDLEWARE
