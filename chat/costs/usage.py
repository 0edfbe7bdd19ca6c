"""Where a reply's token counts come from, which its price and the analytics' "estimated" share
rest on: the provider's own counts, an estimate, or none at all.
"""

from __future__ import annotations

from chat.models import Message
from chat.providers.base import Usage, estimate_tokens


def reply_usage(
    *,
    text: str,
    reported: Usage | None,
    estimated_input_tokens: int,
    complete: bool = False,
    refused: bool = False,
) -> tuple[Usage, str]:
    """A reply's counts and their `Message.UsageSource`.

    The provider's counts (`reported`) when it reported them for the whole reply (`complete`);
    none when it `refused` the request, since nothing was generated or billed; otherwise an
    estimate from `text`, keeping the input counts the provider did report before the reply
    broke off (Anthropic sends them first), else `estimated_input_tokens`.
    """
    if complete and reported is not None:
        return reported, Message.UsageSource.PROVIDER
    if refused:
        return Usage(input_tokens=0, output_tokens=0), Message.UsageSource.NONE
    if reported is not None:
        input_tokens, cached = reported.input_tokens, reported.cached_input_tokens
    else:
        input_tokens, cached = estimated_input_tokens, 0
    estimate = Usage(
        input_tokens=input_tokens,
        output_tokens=estimate_tokens(text),
        cached_input_tokens=cached,
    )
    return estimate, Message.UsageSource.ESTIMATED
