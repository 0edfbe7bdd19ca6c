from __future__ import annotations

from django.urls import path

from chat.api import views

app_name = "api"

urlpatterns = [
    path("models", views.models, name="models"),
    path("models/<path:model_id>", views.model_detail, name="model"),
    path("chat/completions", views.chat_completions, name="chat_completions"),
    path("chat/completions/<str:completion_id>", views.completion_detail, name="completion"),
    path(
        "chat/completions/<str:completion_id>/cancel",
        views.completion_cancel,
        name="completion_cancel",
    ),
]
