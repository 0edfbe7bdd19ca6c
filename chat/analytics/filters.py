"""What the analytics page is narrowed to, as a condition on each table it reads: the roll-ups,
the conversations and the replies."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

SIGNED_IN = "signed-in"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class UsageFilter:
    """What the analytics page is narrowed to: a provider, a model, a source (`page` or `api`)
    and an owner (`signed-in`, `anonymous`, or one `user:<id>` / `visitor:<id>`). Empty means
    any. Roll-ups carry every dimension but one owner's, so only that reads the messages."""

    provider: str = ""
    model: str = ""
    source: str = ""
    owner: str = ""

    @property
    def one_owner(self) -> bool:
        return self.owner.startswith(("user:", "visitor:"))

    @property
    def anonymous(self) -> bool | None:
        return {SIGNED_IN: False, ANONYMOUS: True}.get(self.owner)

    @property
    def splits_latencies(self) -> bool:
        """Whether the latency roll-ups must be read per source and kind of owner, rather than
        merged over them (`UsageDayLatencyTotal`)."""
        return bool(self.source or self.owner)

    def model_q(self) -> Q:
        """For `UsageDayLatencyTotal` rows."""
        condition = Q()
        if self.provider:
            condition &= Q(provider=self.provider)
        if self.model:
            condition &= Q(model=self.model)
        return condition

    def _dimensions(self) -> Q:
        condition = self.model_q()
        if self.source:
            condition &= Q(source=self.source)
        return condition

    def rollup_q(self) -> Q:
        """For `UsageDayModel` and `UsageDayLatency` rows."""
        condition = self._dimensions()
        if self.anonymous is not None:
            condition &= Q(anonymous=self.anonymous)
        return condition

    def owner_rollup_q(self) -> Q:
        """For `UsageDayOwner` rows."""
        condition = self._dimensions()
        # Ranges rather than `startswith`: SQLite's LIKE is case-insensitive and cannot use the
        # (day, owner) index, and ";" is the character after ":".
        if self.owner == SIGNED_IN:
            condition &= Q(owner__gte="user:", owner__lt="user;")
        elif self.owner == ANONYMOUS:
            condition &= Q(owner__gte="visitor:", owner__lt="visitor;")
        elif self.one_owner:
            condition &= Q(owner=self.owner)
        return condition

    def conversation_q(self) -> Q:
        """For conversations (their own provider, model, source and owner)."""
        condition = self._dimensions()
        if self.anonymous is not None:
            condition &= Q(user__isnull=self.anonymous)
        if self.one_owner:
            kind, _, ident = self.owner.partition(":")
            if kind == "user":
                condition &= Q(user_id=int(ident)) if ident.isdigit() else Q(pk__in=[])
            else:
                condition &= Q(user__isnull=True, visitor_id=ident)
        return condition

    def one_owner_message_q(self) -> Q:
        """For the replies of the one owner's conversations (joined to them, which SQLite and
        PostgreSQL serve from the conversations' owner index and then each one's replies)."""
        kind, _, ident = self.owner.partition(":")
        if kind == "user":
            if not ident.isdigit():
                return Q(pk__in=[])
            # Their replies: the ones they asked for, in shared conversations too.
            return Q(author_id=int(ident)) | Q(
                author__isnull=True, conversation__user_id=int(ident)
            )
        return Q(conversation__user__isnull=True, conversation__visitor_id=ident)

    def message_q(self) -> Q:
        """For replies, whose provider and model are their own (a conversation can change model)
        and whose source and owner are their conversation's."""
        condition = Q()
        if self.provider:
            condition &= Q(provider=self.provider)
        if self.model:
            condition &= Q(model=self.model)
        if self.source:
            condition &= Q(conversation__source=self.source)
        if self.anonymous is not None:
            condition &= Q(conversation__user__isnull=self.anonymous)
        return condition


NO_FILTER = UsageFilter()
