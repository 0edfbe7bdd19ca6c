"""Accounts: sign-in, optional self sign-up, password reset when email is configured, and
optional single sign-on through OpenID Connect (django-allauth).

Each option is read per request from the settings (CHAT_SIGNUP, EMAIL_URL, CHAT_OIDC_*), so a
feature that is off is not merely hidden: its URLs answer 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from confusable_homoglyphs import confusables
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_ratelimit.core import is_ratelimited

from chat.conversations.limits import request_client_ip

logger = logging.getLogger(__name__)

SSO_PROVIDER_ID = "sso"


def sso_login_url() -> str | None:
    """Where the single sign-on button posts, or None when single sign-on is off."""
    if not settings.CHAT_OIDC_ENABLED:
        return None
    return reverse("openid_connect_login", kwargs={"provider_id": SSO_PROVIDER_ID})


def account_options(request: HttpRequest) -> dict[str, Any]:
    """Template context: which account features this installation offers."""
    return {
        "signup_enabled": settings.CHAT_SIGNUP,
        "password_reset_enabled": settings.CHAT_EMAIL_ENABLED,
        "sso_name": settings.CHAT_OIDC_PROVIDER_NAME,
        "sso_login_url": sso_login_url(),
    }


def _email_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    # Without a mail server a reset link could never arrive: the pages do not exist.
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.CHAT_EMAIL_ENABLED:
            raise Http404("Password reset needs EMAIL_URL.")
        return view(request, *args, **kwargs)

    return wrapper


class SingleAccountPasswordResetForm(PasswordResetForm):
    """Mails a reset link only for an address that belongs to one account. Sign-up keeps
    addresses unique, but accounts made before (or by staff) may share one: one request mailed a
    link for each, so whoever reads that inbox could take over every one of them. The page says
    the same either way; staff see a warning and can give the accounts their own addresses."""

    def get_users(self, email: str) -> Iterator[Any]:
        users = list(super().get_users(email))
        if len(users) > 1:
            logger.warning(
                "A password reset was asked for an email address %d accounts share; nothing "
                "was mailed. Give each account its own address in the admin.",
                len(users),
            )
            return iter(())
        return iter(users)


password_reset = _email_required(
    auth_views.PasswordResetView.as_view(form_class=SingleAccountPasswordResetForm)
)
password_reset_done = _email_required(auth_views.PasswordResetDoneView.as_view())
password_reset_confirm = _email_required(auth_views.PasswordResetConfirmView.as_view())
password_reset_complete = _email_required(auth_views.PasswordResetCompleteView.as_view())

# The same words for a taken username as for one that cannot be used for another reason: the
# page does not confirm in so many words that an account exists (a refused name still tells a
# guesser something; every attempt counts toward CHAT_SIGNUP_RATE_LIMIT, README "Accounts").
USERNAME_REFUSED = "This username can’t be used. Choose another."
EMAIL_REFUSED = "This email address can’t be used. Use another, or leave it empty."


class SignUpForm(UserCreationForm):  # type: ignore[type-arg]
    """Django's sign-up form (its username field already normalises to NFKC, and refuses a
    name taken in another case), with usernames that mix scripts with look-alike letters
    refused ("gr\\u0430ce" with a Cyrillic а passes for "grace"), and one account per address."""

    email = forms.EmailField(
        required=False,
        help_text="Optional. Only used to send you a password reset link.",
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
        error_messages = {"username": {"unique": USERNAME_REFUSED}}

    def clean_username(self) -> str:
        username = self.cleaned_data.get("username")
        # Mixed scripts with characters confusable across them (Unicode's confusables data,
        # through confusable_homoglyphs); one script throughout, e.g. "Иван", is fine.
        if username and confusables.is_dangerous(username):
            raise ValidationError(USERNAME_REFUSED, code="confusable")
        return super().clean_username()

    def validate_password_for_user(self, user: Any, **options: Any) -> None:
        # Django checks the confirmation field and shows "too short" or "too common" under it;
        # the rules are about the password, so their errors go under Password (a mismatch
        # still shows under the confirmation). Not in django-stubs yet: Django 5.1's.
        options.setdefault("password_field_name", "password1")
        super().validate_password_for_user(user, **options)  # type: ignore[misc]

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email") or ""
        if email and get_user_model().objects.filter(email__iexact=email).exists():
            raise ValidationError(EMAIL_REFUSED, code="unique")
        return email


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("chat:home")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Self sign-up (CHAT_SIGNUP): a normal account (never staff), then signed in; the chats this
    browser had move into it. Rate-limited per client IP."""
    if not settings.CHAT_SIGNUP:
        raise Http404("Sign-up is off.")
    if request.user.is_authenticated:
        return redirect(_safe_next(request))
    form = SignUpForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        limited = is_ratelimited(
            request,
            group="chat-signup",
            key=lambda _group, req: request_client_ip(req),
            rate=settings.CHAT_SIGNUP_RATE_LIMIT or None,
            increment=True,
        )
        if limited:
            form.add_error(None, "Too many sign-ups from this address. Please try again later.")
            status = 429
        elif form.is_valid():
            user = form.save()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(_safe_next(request))
        else:
            status = 400
    context = {"form": form, "next": _safe_next(request)}
    return render(request, "registration/signup.html", context, status=status)


def account_inactive(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/inactive.html", status=403)


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    """allauth's own account pages are not used (Django's are); its sign-up follows CHAT_SIGNUP."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.CHAT_SIGNUP)


class SocialAccountAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    """Whoever the identity provider vouches for gets a normal account on first sign-in."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return bool(settings.CHAT_OIDC_ENABLED)
