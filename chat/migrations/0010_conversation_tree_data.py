# Data for 0009, in its own migration: on PostgreSQL, rows updated in the transaction that also
# adds the foreign keys would leave pending trigger events that block the ALTER TABLE.

from django.db import migrations


def build_tree(apps, schema_editor):
    """Give every existing message its parent: a user message follows the message shown before
    it, a reply follows its question. A reply replaced by Retry or Regenerate (superseded)
    becomes an earlier version of its replacement: both are children of the same question. The
    conversation's current leaf is its last visible message."""
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    for conversation_id in Conversation.objects.values_list("pk", flat=True).iterator():
        messages = list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("id")
            .only("id", "role", "superseded", "parent")
        )
        shown = None  # the last message on the visible branch so far
        question = None  # the last user message
        for message in messages:
            if message.role == "user":
                message.parent_id = shown.pk if shown else None
                question = shown = message
            else:
                message.parent_id = question.pk if question else None
                if not message.superseded:
                    shown = message
        Message.objects.bulk_update(messages, ["parent"], batch_size=500)
        Conversation.objects.filter(pk=conversation_id).update(
            current_leaf_id=shown.pk if shown else None
        )


class Migration(migrations.Migration):
    dependencies = [("chat", "0009_conversation_tree")]

    operations = [migrations.RunPython(build_tree, migrations.RunPython.noop, elidable=True)]
