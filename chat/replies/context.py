"""What a reply is generated from: its model, its history, its owner's budget, its versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from chat.conversations.tree import Tree, Versions, history_turns
from chat.costs.budgets import BudgetGuard, budget_guard
from chat.models import Conversation, Message
from chat.providers.base import CHARS_PER_TOKEN, ChatTurn, estimate_tokens_for_chars, turn_text

# An image's input tokens until the provider reports them: about what a 2048-pixel image costs
# (Anthropic: up to ~1,600 tokens; OpenAI's high detail: a few hundred to ~1,100).
IMAGE_ESTIMATE_CHARS = 1600 * CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a reply is generated from: its model, its history and its owner's budget."""

    provider: str
    model: str
    system_prompt: str
    turns: list[ChatTurn]
    estimated_input_tokens: int
    budget: BudgetGuard | None = None
    requested_max_tokens: int | None = None
    # Where the reply stands among its siblings (‹ 1/2 ›). No sibling can be added while it
    # streams (a send, a regenerate and an edit need the conversation idle), so what was true
    # at its start is true at its end, and its finished fragment needs no query for it.
    versions: Versions | None = None

    @property
    def max_output_tokens(self) -> int:
        """The configured cap (or the request's, if lower), or fewer when what is left of the
        owner's budget pays for fewer."""
        caps = [settings.CHAT_MAX_OUTPUT_TOKENS]
        if self.requested_max_tokens is not None:
            caps.append(self.requested_max_tokens)
        if self.budget is not None:
            affordable = self.budget.output_tokens_left(input_tokens=self.estimated_input_tokens)
            if affordable is not None:
                caps.append(affordable)
        return min(caps)


def job_context_build(
    message: Message,
    conversation: Conversation,
    path: Sequence[Message],
    *,
    budget: BudgetGuard | None,
    versions: Versions | None = None,
) -> JobContext:
    """The context of reply `message` whose ancestors are `path` (root first, ending with the
    question). The history is that branch only — never another version's, whatever the page
    shows meanwhile."""
    turns = history_turns(path)
    turns = turns[-settings.CHAT_HISTORY_MAX_MESSAGES :]
    while turns and turns[0].role != "user":
        turns.pop(0)
    prompt_chars = len(conversation.system_prompt) + sum(
        len(turn_text(turn)) + len(turn.images) * IMAGE_ESTIMATE_CHARS for turn in turns
    )
    return JobContext(
        message.provider,
        message.model,
        conversation.system_prompt,
        turns,
        estimated_input_tokens=estimate_tokens_for_chars(prompt_chars),
        budget=budget,
        requested_max_tokens=message.max_output_tokens,
        versions=versions,
    )


def job_context_load(message_id: int, *, with_budget: bool = True) -> JobContext:
    """The context of reply `message_id`, read from the database."""
    message = Message.objects.select_related("conversation").get(pk=message_id)
    conversation = message.conversation
    tree = Tree.of(conversation)
    budget = (
        budget_guard(
            # The person who asked pays, in a shared conversation too.
            user_id=message.author_id or conversation.user_id,
            visitor_id=conversation.visitor_id,
            provider=message.provider,
            model=message.model,
            on=message.day,
            client_key=message.client_key,
        )
        if with_budget
        else None
    )
    return job_context_build(
        message,
        conversation,
        tree.path_to(message.parent_id),
        budget=budget,
        versions=tree.versions(message),
    )
