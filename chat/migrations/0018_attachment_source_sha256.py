from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chat", "0017_attachments")]

    operations = [
        migrations.AddField(
            model_name="attachment",
            name="source_sha256",
            field=models.CharField(blank=True, db_index=True, max_length=64),
        ),
    ]
