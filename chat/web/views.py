"""Pages, the SSE transport and the no-JavaScript fallback. Thin: services do the work."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from chat import providers
from chat.conversations.errors import ChatInputError
from chat.conversations.feedback import FeedbackError, message_feedback_set
from chat.conversations.limits import ReaderSlot, TooManyReaders, reader_acquire, request_client_ip
from chat.conversations.preferences import default_instructions_for
from chat.conversations.reads import (
    Visitor,
    chat_message_get,
    conversation_get,
    conversation_messages,
    deleted_own,
    is_owner,
    message_get,
    sidebar_page,
)
from chat.db import db_read, db_write_blocking
from chat.http.backpressure import (
    ResponseConnection,
    event_stream_response,
    reader_stream,
    sse_data,
)
from chat.models import Conversation
from chat.replies import start as services
from chat.replies.delivery import reply_wait
from chat.replies.reaper import reply_reap_stale
from chat.rooms.readers import until_removed
from chat.telemetry import metrics
from chat.web.composer_files import posted_attachment_ids
from chat.web.rendering import error_fragment, started_fragment
from chat.web.rooms import announce_started, page_origin, room_page_context
from chat.web.updates import reply_updates
from chat.web.visitors import visitor_id_ensure


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# The longest sidebar a plain "Show more" link (no JavaScript) asks for.
MAX_SHOWN = 2000


def sidebar_page_size() -> int:
    return max(1, settings.CHAT_SIDEBAR_PAGE_SIZE)


def _visitor(request: HttpRequest) -> Visitor:
    # A random id in a signed cookie, not a session: viewing the page writes no database row,
    # and the id lets the conversations follow the visitor into their account (chat.web.visitors).
    visitor_id = "" if request.user.is_authenticated else visitor_id_ensure(request)
    return Visitor(user=request.user, visitor_id=visitor_id, client_ip=request_client_ip(request))


async def _avisitor(request: HttpRequest) -> Visitor:
    return await db_read(_visitor, request)


def _login_required(request: HttpRequest) -> HttpResponse | None:
    if settings.CHAT_REQUIRE_LOGIN and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return None


def home(request: HttpRequest) -> HttpResponse:
    return redirect("chat:streaming_demo")


@require_GET
def streaming_demo(request: HttpRequest, conversation_id: uuid.UUID | None = None) -> HttpResponse:
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    try:
        conversation = conversation_get(visitor, conversation_id) if conversation_id else None
    except Http404:
        # Someone else's chat and no chat at all get the same page (ids cannot be probed), one
        # that says why a link can stop working here and how to get back to it. Its owner is
        # told they deleted it, and may restore it.
        deleted = deleted_own(visitor, conversation_id)
        return render(request, "chat/not_yours.html", {"deleted": deleted}, status=404)
    context = _page_context(request, visitor, conversation)
    if request.GET.get("deleted"):
        # Just deleted (the delete redirects here, or to the chat the sidebar's delete came
        # from): say so, with Undo while it is kept.
        context["just_deleted"] = deleted_own(visitor, request.GET["deleted"])
        context["deleted_for_good"] = (
            context["just_deleted"] is None and settings.CHAT_PURGE_DELETED
        )
    return render(request, "chat/streaming_demo.html", context)


def _reap(message_ids: list[int]) -> int:
    return db_write_blocking(functools.partial(reply_reap_stale, message_ids=message_ids))


def _page_context(
    request: HttpRequest, visitor: Visitor, conversation: Conversation | None, **extra: Any
) -> dict[str, Any]:
    messages = conversation_messages(conversation) if conversation else []
    streaming_ids = [m.pk for m in messages if m.is_streaming]
    # A reply whose worker died shows as interrupted instead of streaming forever.
    # (Through the writer, like every reply write: the page only asks.)
    if conversation and streaming_ids and _reap(streaming_ids):
        messages = conversation_messages(conversation)
    options = providers.available_models()
    default = providers.default_model()
    selected = (
        f"{conversation.provider}:{conversation.model}"
        if conversation
        else (default.value if default else "")
    )
    # A new chat starts from the person's default instructions (chat.conversations.preferences);
    # a started one shows its own prompt.
    system_prompt = (
        conversation.system_prompt if conversation else default_instructions_for(request.user)
    )
    # Without JavaScript, "Show more" reloads the page with a longer list (`?shown=`).
    shown = min(_offset(request.GET.get("shown")) or sidebar_page_size(), MAX_SHOWN)
    return {
        "conversation": conversation,
        "sidebar": sidebar_page(visitor, limit=shown),
        # Where a sidebar row's plain form (no JavaScript) comes back to.
        "back_path": request.path,
        "messages": messages,
        "streaming": any(m.is_streaming for m in messages),
        "totals": conversation.totals() if conversation else None,
        "model_options": options,
        "selected_model": selected,
        "system_prompt": system_prompt,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        # The composer checks a file's size and count before uploading, in the server's words.
        "max_files": settings.CHAT_MAX_FILES_PER_MESSAGE,
        "max_upload_bytes": settings.CHAT_MAX_UPLOAD_BYTES,
        "transport": "sse" if request.GET.get("transport") == "sse" else "ws",
        # The page asks for the generated name once a new conversation's first reply is done.
        "title_model": bool(settings.CHAT_TITLE_MODEL),
        "api_enabled": settings.CHAT_API_ENABLED,
        # A member's view of a shared conversation: no rename, share or delete in its menu.
        "member_view": bool(conversation and not is_owner(visitor, conversation)),
        **room_page_context(visitor, conversation),
        **extra,
    }


@require_POST
async def post_message(request: HtmxHttpRequest) -> HttpResponseBase:
    """The composer's POST: `action=send` or `action=stop`. htmx (the SSE transport) gets
    fragments; a browser without JavaScript gets redirected to the finished reply."""
    if await _sign_in_missing(request):
        return redirect_to_login(reverse("chat:streaming_demo"))
    visitor = await _avisitor(request)
    conversation_id = request.POST.get("conversation") or None
    if request.POST.get("action") == "stop":
        if conversation_id is None:
            raise Http404("No such conversation.")
        try:
            await services.reply_stop(visitor=visitor, conversation_id=conversation_id)
        except ChatInputError as exc:  # not theirs to stop (403), or the service is down (503)
            return _refused(HttpResponse(error_fragment(exc.message)), exc)
        if request.htmx:
            return HttpResponse(status=204)
        return redirect("chat:conversation", conversation_id=conversation_id)
    try:
        # Without JavaScript the files come with the message (a multipart form).
        posted = await posted_attachment_ids(request, visitor)
        started = await services.areply_start(
            visitor=visitor,
            conversation_id=conversation_id,
            text=request.POST.get("message", ""),
            model_choice=request.POST.get("model", ""),
            system_prompt=request.POST.get("system_prompt", ""),
            attachment_ids=request.POST.getlist("attachment") + posted,
        )
    except ChatInputError as exc:
        if request.htmx:
            return _refused(HttpResponse(error_fragment(exc.message)), exc)
        page = await db_read(_page_with_error, request, visitor, conversation_id, exc)
        return _refused(page, exc)
    await announce_started(started, origin=_page_origin(request))
    if request.htmx and request.POST.get("stream") == "1":
        return await _started_stream(request, visitor, started)
    return await _started_response(request, started)


def _page_origin(request: HttpRequest) -> str:
    # The page that sent it already shows its bubbles: the room does not echo them back to it.
    return page_origin(request.headers.get("X-Room-Client") or request.POST.get("room_client"))


def _refused(response: HttpResponse, error: ChatInputError) -> HttpResponse:
    """A refused send: 400 for input to fix, 429 for limits, 503 when chatsite itself is down;
    the last two say when to try again."""
    response.status_code = error.status
    if retry_after := getattr(error, "retry_after", None):
        response["Retry-After"] = str(retry_after)
    return response


async def _sign_in_missing(request: HttpRequest) -> bool:
    return settings.CHAT_REQUIRE_LOGIN and not (await request.auser()).is_authenticated


async def _started_response(
    request: HtmxHttpRequest, started: services.ReplyStarted
) -> HttpResponseBase:
    """htmx (the SSE transport) gets the new bubbles; a browser without JavaScript has no stream
    to watch, so it waits for the reply and then sees the page."""
    if request.htmx:
        return HttpResponse(await db_read(started_fragment, started))
    await reply_wait(started.assistant_message.pk, timeout=settings.CHAT_REPLY_TIMEOUT)
    return redirect("chat:conversation", conversation_id=started.conversation.pk)


async def _started_stream(
    request: HttpRequest, visitor: Visitor, started: services.ReplyStarted
) -> HttpResponseBase:
    """The SSE page's send in one request: the new bubbles as the first event, then the reply
    itself, as its events view sends it. htmx's hx-sse reads an event stream from any request."""
    # Rendered before a reader slot is taken, so that a failure here (the database down) holds
    # none; a refused slot then renders it again without the streamed mark (rare).
    html = await db_read(functools.partial(started_fragment, started, streamed=True))
    try:
        slot = reader_acquire(visitor)
    except TooManyReaders:
        # The reply has started all the same: the page follows it over GET, which says why
        # it cannot (as after a socket's send).
        return HttpResponse(await db_read(started_fragment, started))
    # `hx:release` frees the form for its next request (Stop) while the reply streams on.
    lead = f"{sse_data(html)}\nevent: hx:release\n\n"
    return _event_stream(
        request,
        started.assistant_message.pk,
        0,
        slot=slot,
        lead=lead,
        member_of=_member_of(visitor, started.conversation),
    )


def _page_with_error(
    request: HttpRequest,
    visitor: Visitor,
    conversation_id: str | None,
    error: ChatInputError,
) -> HttpResponse:
    conversation = conversation_get(visitor, conversation_id) if conversation_id else None
    context = _page_context(
        request,
        visitor,
        conversation,
        error=error.message,
        draft=request.POST.get("message", ""),
        system_prompt=request.POST.get("system_prompt", ""),
    )
    return render(request, "chat/streaming_demo.html", context, status=400)


@require_POST
async def regenerate(request: HtmxHttpRequest, message_id: int) -> HttpResponseBase:
    """Retry a failed reply or regenerate any reply: a new version beside the old ones."""
    if await _sign_in_missing(request):
        return redirect_to_login(reverse("chat:streaming_demo"))
    visitor = await _avisitor(request)
    try:
        started = await services.areply_regenerate(visitor=visitor, message_id=message_id)
    except ChatInputError as exc:
        if request.htmx:
            return _refused(HttpResponse(error_fragment(exc.message)), exc)
        message = await db_read(chat_message_get, visitor, message_id)
        return redirect("chat:conversation", conversation_id=message.conversation_id)
    await announce_started(started, origin=_page_origin(request))
    return await _started_response(request, started)


@require_POST
async def edit_message(request: HtmxHttpRequest, message_id: int) -> HttpResponseBase:
    """Edit a sent message and resend it: a new branch beside the original."""
    if await _sign_in_missing(request):
        return redirect_to_login(reverse("chat:streaming_demo"))
    visitor = await _avisitor(request)
    try:
        started = await services.amessage_edit(
            visitor=visitor, message_id=message_id, text=request.POST.get("message", "")
        )
    except ChatInputError as exc:
        if request.htmx:
            return HttpResponse(error_fragment(exc.message), status=400)
        message = await db_read(chat_message_get, visitor, message_id)
        return await db_read(_page_with_error, request, visitor, str(message.conversation_id), exc)
    await announce_started(started, origin=_page_origin(request))
    return await _started_response(request, started)


@require_GET
async def reply_events(request: HttpRequest, message_id: int) -> HttpResponseBase:
    """The SSE transport: the reply from `Last-Event-ID` (or `?after=`) to its end."""
    if await _sign_in_missing(request):
        raise Http404("No such reply.")
    visitor = await _avisitor(request)
    message = await db_read(message_get, visitor, message_id)
    after = _offset(request.headers.get("Last-Event-ID") or request.GET.get("after"))
    try:
        slot = reader_acquire(visitor)
    except TooManyReaders as exc:
        return _refused(HttpResponse(error_fragment(exc.message)), exc)
    return _event_stream(
        request, message.pk, after, slot=slot, member_of=_member_of(visitor, message.conversation)
    )


def _member_of(visitor: Visitor, conversation: Conversation) -> Any:
    """The conversation whose removal ends this reader: a member's (the owner is never
    removed, and reads without listening to the room)."""
    return None if is_owner(visitor, conversation) else conversation.pk


def _offset(value: str | None) -> int:
    try:
        return min(max(0, int(str(value or 0)[:12])), 2**31)
    except ValueError:
        return 0


async def _events(message_id: int, after: int, *, lead: str = "") -> AsyncIterator[str]:
    """The reply's updates from `after` as SSE events, after `lead` (what a streamed send
    says first)."""
    yield f"{lead}retry: 1000\n\n"
    updates = reply_updates(message_id, after=after, idle_seconds=settings.CHAT_SSE_PING_SECONDS)
    async for update in metrics.reading("sse", updates):
        yield ": ping\n\n" if update is None else f"id: {update.seq}\n{sse_data(update.html)}\n"


def _event_stream(
    request: HttpRequest,
    message_id: int,
    after: int,
    *,
    slot: ReaderSlot,
    lead: str = "",
    member_of: Any = None,
) -> HttpResponseBase:
    events = _events(message_id, after, lead=lead)
    if member_of is not None:
        # A member's reader ends the moment they are removed, on whichever worker it runs.
        events = until_removed(events, conversation_id=member_of, user_id=int(request.user.pk or 0))
    return event_stream_response(
        reader_stream(
            events,
            connection=ResponseConnection(request),
            release=slot.release,
            drain_seconds=settings.CHAT_SSE_DRAIN_SECONDS,
        ),
        release=slot.release,
    )


@require_POST
def feedback(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    """Rate a reply 👍 / 👎 and comment on it. htmx gets the feedback form back; a browser
    without JavaScript goes back to the conversation."""
    if denied := _login_required(request):
        return denied
    visitor = _visitor(request)
    comment = request.POST.get("comment")
    try:
        message = message_feedback_set(
            visitor=visitor,
            message_id=message_id,
            rating=request.POST.get("rating", ""),
            comment=comment,
        )
    except FeedbackError as exc:
        message = message_get(visitor, message_id)
        if request.htmx:
            context = {"m": message, "feedback_error": exc.message}
            return render(request, "chat/partials/_feedback.html", context, status=400)
        page = _page_context(request, visitor, message.conversation, error=exc.message)
        return render(request, "chat/streaming_demo.html", page, status=400)
    if request.htmx:
        context = {"m": message, "saved": True, "feedback_open": comment is None}
        return render(request, "chat/partials/_feedback.html", context)
    url = reverse("chat:conversation", kwargs={"conversation_id": message.conversation_id})
    return redirect(f"{url}#msg-{message.pk}")
