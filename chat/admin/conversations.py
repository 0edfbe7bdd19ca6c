from __future__ import annotations

from django.contrib import admin

from chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ("role", "status", "ended_reason", "model", "input_tokens", "output_tokens", "content")
    readonly_fields = fields
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "visitor_id", "model", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["title", "user__username"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "role", "status", "ended_reason", "provider", "model", "created_at"]
    list_filter = ["status", "ended_reason", "provider"]
    raw_id_fields = ["conversation"]
