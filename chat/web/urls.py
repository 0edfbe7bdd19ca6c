from __future__ import annotations

from django.urls import path

from chat.api import pages as api_pages
from chat.web import (
    attachment_views,
    conversation_views,
    rooms,
    settings_views,
    sharing_views,
    views,
)

app_name = "chat"

urlpatterns = [
    path(
        "streaming-demo/c/<uuid:conversation_id>/sharing",
        sharing_views.sharing_page,
        name="sharing",
    ),
    path("join/<str:token>", sharing_views.join, name="join"),
    path("s/<str:token>", sharing_views.snapshot, name="snapshot"),
    path(
        "s/<str:token>/files/<uuid:attachment_id>",
        attachment_views.snapshot_download,
        name="snapshot_file",
    ),
    path(
        "s/<str:token>/files/<uuid:attachment_id>/thumbnail",
        attachment_views.snapshot_thumbnail,
        name="snapshot_file_thumbnail",
    ),
    path("settings/shares", sharing_views.shares, name="shares"),
    path("", views.home, name="home"),
    path("streaming-demo", views.streaming_demo, name="streaming_demo"),
    path("streaming-demo/c/<uuid:conversation_id>", views.streaming_demo, name="conversation"),
    path("streaming-demo/messages", views.post_message, name="post_message"),
    path(
        "streaming-demo/replies/<int:message_id>/regenerate",
        views.regenerate,
        name="regenerate",
    ),
    path("streaming-demo/replies/<int:message_id>/feedback", views.feedback, name="feedback"),
    path("streaming-demo/replies/<int:message_id>/events", views.reply_events, name="events"),
    path("streaming-demo/c/<uuid:conversation_id>/room", rooms.room_events, name="room_events"),
    path("streaming-demo/c/<uuid:conversation_id>/typing", rooms.typing, name="room_typing"),
    path("settings/api-keys", api_pages.api_keys, name="api_keys"),
    path("settings/instructions", settings_views.instructions, name="instructions"),
    path(
        "streaming-demo/replies/<int:message_id>/delete",
        conversation_views.delete_turn,
        name="delete_turn",
    ),
    path("streaming-demo/messages/<int:message_id>/edit", views.edit_message, name="edit_message"),
    path(
        "streaming-demo/messages/<int:message_id>/show",
        conversation_views.show_version,
        name="show_version",
    ),
    path("streaming-demo/attachments", attachment_views.upload, name="attachments"),
    path(
        "streaming-demo/attachments/<uuid:attachment_id>",
        attachment_views.download,
        name="attachment",
    ),
    path(
        "streaming-demo/attachments/<uuid:attachment_id>/thumbnail",
        attachment_views.thumbnail,
        name="attachment_thumbnail",
    ),
    path("streaming-demo/search", conversation_views.search, name="search"),
    path(
        "streaming-demo/conversations",
        conversation_views.conversation_list,
        name="conversation_list",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/rename",
        conversation_views.rename,
        name="rename",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/delete",
        conversation_views.delete,
        name="delete",
    ),
    path("streaming-demo/c/<uuid:conversation_id>/pin", conversation_views.pin, name="pin"),
    path("streaming-demo/c/<uuid:conversation_id>/unpin", conversation_views.unpin, name="unpin"),
    path(
        "streaming-demo/c/<uuid:conversation_id>/archive",
        conversation_views.archive,
        name="archive",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/unarchive",
        conversation_views.unarchive,
        name="unarchive",
    ),
    path("streaming-demo/archived", conversation_views.archived, name="archived"),
    path(
        "streaming-demo/c/<uuid:conversation_id>/restore",
        conversation_views.restore,
        name="restore",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/title",
        conversation_views.title,
        name="conversation_title",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/export.md",
        conversation_views.export_markdown,
        name="export_markdown",
    ),
    path(
        "streaming-demo/c/<uuid:conversation_id>/export.json",
        conversation_views.export_json,
        name="export_json",
    ),
]
