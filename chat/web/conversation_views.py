"""Managing conversations: rename, delete, search, the sidebar's pages, export, and choosing
between versions. Thin: services do the writes, selectors the reads. Every action works as a
plain form or link without JavaScript; htmx requests get just the fragments that change."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from chat.conversations import writes
from chat.conversations.errors import ChatInputError
from chat.conversations.exports import conversation_json, conversation_markdown, export_filename
from chat.conversations.reads import (
    Visitor,
    chat_message_get,
    conversation_get,
    conversations_archived,
    conversations_search,
    deleted_own,
    sidebar_page,
)
from chat.replies import start as services
from chat.web.rendering import error_fragment, message_list_fragment
from chat.web.views import (
    HtmxHttpRequest,
    _login_required,
    _offset,
    _page_context,
    _visitor,
    sidebar_page_size,
)


def _back_to(conversation_id: object) -> HttpResponse:
    return redirect("chat:conversation", conversation_id=conversation_id)


@require_POST
def rename(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    try:
        conversation = writes.conversation_rename(
            visitor=visitor, conversation_id=conversation_id, title=request.POST.get("title", "")
        )
    except ChatInputError as exc:
        if request.htmx:
            # Shown by the composer; the sidebar (a row's inline rename targets it) stays.
            return HttpResponse(
                error_fragment(exc.message), status=exc.status, headers={"HX-Reswap": "none"}
            )
        conversation = conversation_get(visitor, conversation_id)
        context = _page_context(request, visitor, conversation, error=exc.message)
        return render(request, "chat/streaming_demo.html", context, status=exc.status)
    if request.htmx and request.POST.get("sidebar"):
        # Renamed in its sidebar row: the list again, and the header if it is the open chat.
        return _sidebar_changed(
            request, visitor, conversation.pk, status=f"Renamed to “{conversation.title}”."
        )
    if request.htmx:
        return HttpResponse(
            render_to_string(
                "chat/partials/_renamed.html", {"conversation": conversation}, request=request
            )
        )
    return _back_to(conversation.pk)


@require_POST
def delete(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Delete, after the confirmation step of the page's "Delete…" disclosure (which needs no
    JavaScript either)."""
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    try:
        services.conversation_delete(visitor=visitor, conversation_id=conversation_id)
    except ChatInputError as exc:
        conversation = conversation_get(visitor, conversation_id)
        context = _page_context(request, visitor, conversation, error=exc.message)
        return render(request, "chat/streaming_demo.html", context, status=exc.status)
    # The next page says so, with Undo while the conversation is kept: the page the delete
    # came from (a sidebar row's menu, the archived list), else a new chat.
    back = _next(request) or reverse("chat:streaming_demo")
    if back == reverse("chat:conversation", args=[conversation_id]):
        back = reverse("chat:streaming_demo")
    return redirect(f"{back}?deleted={conversation_id}")


def _next(request: HttpRequest) -> str:
    """The page a sidebar row's form came from (its `next` field), if it is one of ours:
    without JavaScript the form's POST redirects back there."""
    target = request.POST.get("next", "").split("?")[0]
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


_CONVERSATION_PATH = re.compile(r"/streaming-demo/c/([0-9a-f-]{36})(?:$|[/?#])")


def _sidebar_changed(
    request: HtmxHttpRequest, visitor: Visitor, conversation_id: uuid.UUID, *, status: str
) -> HttpResponse:
    """After a sidebar row's action: htmx gets the sidebar's list again (the open chat still
    marked, `status` said to screen readers); a plain form goes back where it came from."""
    if not request.htmx:
        return redirect(_next(request) or reverse("chat:conversation", args=[conversation_id]))
    current_url = request.headers.get("HX-Current-URL", "")
    current = _CONVERSATION_PATH.search(current_url)
    current_id = current.group(1) if current else ""
    context = {
        "sidebar": sidebar_page(visitor, limit=sidebar_page_size()),
        "current_id": current_id,
        "back_path": urlsplit(current_url).path,
        "sidebar_status": status,
        "renamed": (
            conversation_get(visitor, conversation_id)
            if current_id == str(conversation_id) and request.POST.get("sidebar")
            else None
        ),
    }
    return render(request, "chat/partials/_sidebar_list.html", context)


def _row_action(
    request: HtmxHttpRequest,
    conversation_id: uuid.UUID,
    *,
    pin: bool | None = None,
    archive: bool | None = None,
) -> HttpResponse:
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    try:
        if pin is not None:
            conversation = writes.conversation_pin(
                visitor=visitor, conversation_id=conversation_id, pinned=pin
            )
            done = "Pinned" if pin else "Unpinned"
        else:
            conversation = writes.conversation_archive(
                visitor=visitor, conversation_id=conversation_id, archived=bool(archive)
            )
            done = "Archived" if archive else "Unarchived"
    except ChatInputError as exc:
        if request.htmx:
            return HttpResponse(error_fragment(exc.message), status=exc.status)
        return render(request, "chat/not_allowed.html", {"reason": exc.message}, status=exc.status)
    title = conversation.title or "New chat"
    return _sidebar_changed(request, visitor, conversation.pk, status=f"{done} “{title}”.")


@require_POST
def pin(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _row_action(request, conversation_id, pin=True)


@require_POST
def unpin(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _row_action(request, conversation_id, pin=False)


@require_POST
def archive(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _row_action(request, conversation_id, archive=True)


@require_POST
def unarchive(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _row_action(request, conversation_id, archive=False)


@require_GET
def archived(request: HtmxHttpRequest) -> HttpResponse:
    """The archived conversations: open, unarchive or delete each."""
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    just_deleted = (
        deleted_own(visitor, request.GET["deleted"]) if "deleted" in request.GET else None
    )
    return render(
        request,
        "chat/archived.html",
        {"conversations": conversations_archived(visitor), "just_deleted": just_deleted},
    )


@require_POST
def restore(request: HtmxHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Undo a delete (the page after deleting offers it, as does the deleted chat's link)."""
    if denied := _login_required(request):
        return denied
    writes.conversation_restore(visitor=_visitor(request), conversation_id=conversation_id)
    return redirect("chat:conversation", conversation_id=conversation_id)


@require_GET
def search(request: HtmxHttpRequest) -> HttpResponse:
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    query = request.GET.get("q", "")[:200]
    hits = conversations_search(visitor, query, limit=settings.CHAT_SEARCH_MAX_RESULTS)
    context = {
        "search_query": " ".join(query.split()),
        "search_hits": hits,
        "search_capped": len(hits) >= settings.CHAT_SEARCH_MAX_RESULTS,
    }
    if request.htmx:
        return render(request, "chat/partials/_search_results.html", context)
    return render(
        request, "chat/streaming_demo.html", _page_context(request, visitor, None) | context
    )


@require_GET
def conversation_list(request: HtmxHttpRequest) -> HttpResponse:
    """The next page of the sidebar ("Show more"), for htmx; without it, the page itself
    with a longer list."""
    if denied := _login_required(request):
        return denied
    offset = _offset(request.GET.get("offset"))
    if not request.htmx:
        return redirect(f"/streaming-demo?shown={offset + sidebar_page_size()}")
    page = sidebar_page(
        _visitor(request),
        offset=offset,
        limit=sidebar_page_size(),
        after_group=request.GET.get("after", ""),
    )
    back_path = urlsplit(request.headers.get("HX-Current-URL", "")).path
    return render(
        request,
        "chat/partials/_conversation_list.html",
        {"sidebar": page, "back_path": back_path},
    )


@require_GET
def title(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The conversation's current name (the page asks after a generated title, CHAT_TITLE_MODEL)."""
    if denied := _login_required(request):
        return denied
    conversation = conversation_get(_visitor(request), conversation_id)
    return JsonResponse({"title": conversation.title or "New chat"})


def _export(request: HttpRequest, conversation_id: uuid.UUID, kind: str) -> HttpResponse:
    if denied := _login_required(request):
        return denied
    conversation = conversation_get(_visitor(request), conversation_id)
    if kind == "md":
        body, content_type = conversation_markdown(conversation), "text/markdown; charset=utf-8"
    else:
        body, content_type = conversation_json(conversation), "application/json"
    response = HttpResponse(body, content_type=content_type)
    filename = export_filename(conversation, kind)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def export_markdown(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _export(request, conversation_id, "md")


@require_GET
def export_json(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    return _export(request, conversation_id, "json")


def _branch_changed(request: HtmxHttpRequest, conversation_id: object) -> HttpResponse:
    if request.htmx:
        visitor = _visitor(request)
        conversation = conversation_get(visitor, conversation_id)
        viewer_id = visitor.user.pk if visitor.is_authenticated else None
        return HttpResponse(message_list_fragment(conversation, viewer_id=viewer_id))
    return _back_to(conversation_id)


@require_POST
def show_version(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    """‹ › : show this version of a message, and the newest branch below it."""
    if denied := _login_required(request):
        return denied
    conversation = writes.branch_switch(visitor=_visitor(request), message_id=message_id)
    return _branch_changed(request, conversation.pk)


@require_POST
def delete_turn(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    """Delete a failed reply (with its question, when it was the only reply to it)."""
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    try:
        conversation = writes.turn_delete(visitor=visitor, message_id=message_id)
    except ChatInputError as exc:
        if request.htmx:
            return HttpResponse(error_fragment(exc.message), status=exc.status)
        message = chat_message_get(visitor, message_id)
        context = _page_context(request, visitor, message.conversation, error=exc.message)
        return render(request, "chat/streaming_demo.html", context, status=exc.status)
    return _branch_changed(request, conversation.pk)
