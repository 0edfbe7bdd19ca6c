"""Sharing: the owner's sharing page (invite link, members, snapshot link), joining by an invite
link, snapshot links and the list of a person's links. Thin: chat/conversations/sharing.py and
snapshots.py do the work. Every page works without JavaScript (plain forms, redirect after POST).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_http_methods

from chat.attachments.shown import snapshot_file
from chat.conversations import sharing, snapshots
from chat.conversations.errors import NotAllowed
from chat.conversations.reads import conversation_get, conversation_members
from chat.web.rendering import render_markdown
from chat.web.views import HtmxHttpRequest, _login_required, _visitor

NOINDEX = "noindex, nofollow"


def _rendered(text: str) -> SafeString:
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3


def not_allowed(request: HttpRequest, error: NotAllowed) -> HttpResponse:
    """A refusal in words, for someone who may see the conversation but not do this."""
    return render(request, "chat/not_allowed.html", {"reason": error.message}, status=403)


@require_http_methods(["GET", "POST"])
def sharing_page(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The owner's "Share…" page. POST `action`: `new_link` (with `expiry`), `turn_off`,
    `remove` (`user`), `stop_sharing`, `publish` (with `expiry`), `presence` (the switch: on
    when `presence` is sent; htmx gets the switch's new status line, not a redirect)."""
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    conversation = conversation_get(visitor, conversation_id)  # a stranger: 404
    try:
        sharing.owned_conversation_get(visitor, conversation.pk, doing="share it")
    except NotAllowed as exc:
        return not_allowed(request, exc)
    if not visitor.is_authenticated:
        context = {
            "conversation": conversation,
            "anonymous_reason": sharing.ANONYMOUS_OWNER_MESSAGE,
        }
        return render(request, "chat/sharing.html", context)
    if request.method == "POST":
        action = request.POST.get("action", "")
        kwargs: dict[str, Any] = {"visitor": visitor, "conversation_id": conversation.pk}
        try:
            if action == "new_link":
                sharing.invite_create(**kwargs, expiry=request.POST.get("expiry", ""))
            elif action == "turn_off":
                sharing.invite_disable(**kwargs)
            elif action == "remove":
                sharing.member_remove(**kwargs, user_id=request.POST.get("user"))
            elif action == "stop_sharing":
                sharing.sharing_stop(**kwargs)
            elif action == "publish":
                snapshots.share_publish(**kwargs, expiry=request.POST.get("expiry", ""))
            elif action == "presence":
                conversation = sharing.presence_set(
                    **kwargs, enabled=request.POST.get("presence") == "on"
                )
                if request.htmx:
                    return render(
                        request, "chat/partials/_presence_switch_status.html", _switch(conversation)
                    )
        except NotAllowed as exc:
            return not_allowed(request, exc)
        return redirect("chat:sharing", conversation_id=conversation.pk)
    invite = sharing.invite_current(conversation)
    share = snapshots.share_current(visitor, conversation)
    context = {
        "conversation": conversation,
        "invite": invite,
        "invite_url": request.build_absolute_uri(reverse("chat:join", args=[invite.token]))
        if invite
        else "",
        "members": conversation_members(conversation)[1:],
        "share": share,
        "public_shares": settings.CHAT_PUBLIC_SHARES,
        "share_url": request.build_absolute_uri(reverse("chat:snapshot", args=[share.token]))
        if share
        else "",
        **_switch(conversation),
    }
    return render(request, "chat/sharing.html", context)


def _switch(conversation: Any) -> dict[str, Any]:
    """The presence switch as the sharing page shows it (off for the whole site: shown, not
    switchable)."""
    return {
        "presence_enabled": conversation.presence_enabled,
        "site_presence": settings.CHAT_PRESENCE,
    }


@require_GET
def join(request: HttpRequest, token: str) -> HttpResponse:
    """An invite link: sign in first (and come back here), then join and see the chat. A link
    turned off, expired or unknown is the same 404."""
    visitor = _visitor(request)
    try:
        if not visitor.is_authenticated:
            # Checked first, so a dead link says so before asking anyone to sign in.
            sharing.invite_check(token)
            return redirect_to_login(request.get_full_path())
        conversation = sharing.invite_join(visitor=visitor, token=token)
    except Http404:
        return render(request, "chat/invite_gone.html", status=404)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@require_http_methods(["GET", "POST"])
def snapshot(request: HttpRequest, token: str) -> HttpResponse:
    """A published snapshot, read-only; POST: continue it as a new conversation of one's own."""
    if not settings.CHAT_PUBLIC_SHARES and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        share = snapshots.share_get(token)
    except Http404:
        response = render(request, "chat/snapshot_gone.html", status=404)
        response["X-Robots-Tag"] = NOINDEX
        return response
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        conversation = snapshots.share_continue(visitor=_visitor(request), token=token)
        return redirect("chat:conversation", conversation_id=conversation.pk)

    # Rendered here with the chat's own Markdown (sanitised by nh3), the same as the page's.
    def url_of(attachment_id: str, thumbnail: bool) -> str:
        name = "chat:snapshot_file_thumbnail" if thumbnail else "chat:snapshot_file"
        return reverse(name, args=[token, attachment_id])

    turns = [
        {
            **turn,
            "html": _rendered(turn["content"]) if turn["role"] == "assistant" else "",
            "files": [snapshot_file(record, url_of) for record in turn.get("files") or ()],
        }
        for turn in share.snapshot
    ]
    authors = {turn["author"] for turn in share.snapshot if turn["role"] == "user"} - {""}
    context = {"share": share, "turns": turns, "show_authors": len(authors) > 1}
    response = render(request, "chat/snapshot.html", context)
    response["X-Robots-Tag"] = NOINDEX
    return response


@require_http_methods(["GET", "POST"])
def shares(request: HttpRequest) -> HttpResponse:
    """/settings/shares: every snapshot link a person published, with Revoke."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if request.method == "POST":
        snapshots.share_revoke(user=request.user, share_id=request.POST.get("share"))
        return redirect("chat:shares")
    rows = [
        (share, request.build_absolute_uri(reverse("chat:snapshot", args=[share.token])))
        for share in snapshots.shares_of(request.user)
    ]
    return render(request, "chat/shares.html", {"rows": rows})
