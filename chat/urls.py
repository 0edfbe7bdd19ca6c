from __future__ import annotations

from django.urls import path

from chat import views
from chat.api import pages as api_pages

app_name = "chat"

urlpatterns = [
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
    path("settings/api-keys", api_pages.api_keys, name="api_keys"),
]
