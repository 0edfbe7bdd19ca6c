from __future__ import annotations

from chat.costs.usage import reply_usage
from chat.models import Message
from chat.providers.base import Usage


def test_a_complete_reply_keeps_the_providers_counts():
    reported = Usage(input_tokens=120, output_tokens=7, cached_input_tokens=100)

    usage, source = reply_usage(
        text="x" * 400, reported=reported, estimated_input_tokens=5, complete=True
    )

    assert usage == reported
    assert source == Message.UsageSource.PROVIDER


def test_a_refused_request_counts_nothing():
    usage, source = reply_usage(text="", reported=None, estimated_input_tokens=50, refused=True)

    assert usage == Usage(input_tokens=0, output_tokens=0)
    assert source == Message.UsageSource.NONE


def test_a_broken_off_reply_is_estimated_keeping_the_input_counts_reported_early():
    reported = Usage(input_tokens=120, output_tokens=0, cached_input_tokens=100)

    usage, source = reply_usage(text="x" * 400, reported=reported, estimated_input_tokens=5)

    assert usage == Usage(input_tokens=120, output_tokens=100, cached_input_tokens=100)
    assert source == Message.UsageSource.ESTIMATED


def test_without_reported_counts_the_input_is_the_prompts_estimate():
    usage, source = reply_usage(text="x" * 8, reported=None, estimated_input_tokens=30)

    assert usage == Usage(input_tokens=30, output_tokens=2)
    assert source == Message.UsageSource.ESTIMATED


def test_counts_reported_for_an_incomplete_reply_are_an_estimate():
    # The provider sent its counts and then the reply failed: the text is not what it counted.
    reported = Usage(input_tokens=40, output_tokens=9)

    usage, source = reply_usage(text="x" * 4, reported=reported, estimated_input_tokens=5)

    assert usage == Usage(input_tokens=40, output_tokens=1)
    assert source == Message.UsageSource.ESTIMATED
