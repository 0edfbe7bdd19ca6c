"""`manage.py create_api_key USERNAME [--name NAME]`: print a new API key for scripts and
operators. The key is printed once, alone on stdout, and only its digest is stored."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.api.keys import api_key_create


class Command(BaseCommand):
    help = "Create a personal API key for the OpenAI-compatible API and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the key is for (default: 'API key').")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        if not user.is_active:
            raise CommandError(f"{options['username']!r} is not an active user.")
        api_key, raw_key = api_key_create(user=user, name=options["name"] or "API key")
        self.stderr.write(f"Created key “{api_key.name}” ({api_key.prefix}…) for {user}.")
        self.stdout.write(raw_key)
