from __future__ import annotations

import json
import random

import pytest

from chat.analytics.histograms import Histogram, bucket_of, bucket_value


def test_merging_histograms_gives_the_histogram_of_all_their_values():
    rng = random.Random(7)
    # Runs that overlap, one inside another, one far to each side, zeros, and an empty one.
    groups = [
        [rng.uniform(200, 900) for _ in range(300)],
        [rng.uniform(400, 500) for _ in range(50)],
        [rng.uniform(20_000, 90_000) for _ in range(40)] + [0, 0],
        [rng.uniform(0.2, 3) for _ in range(10)],
        [],
    ]
    merged = Histogram()
    for group in groups:
        merged.merge(Histogram.of(group))

    everything = Histogram.of(value for group in groups for value in group)
    assert merged == everything
    assert merged.total == sum(len(group) for group in groups) == everything.total
    assert merged.zero == 2
    for percent in (1, 50, 95, 99, 100):
        assert merged.percentile(percent) == everything.percentile(percent)


def test_merging_leaves_the_merged_histogram_unchanged():
    low, high = Histogram.of([10, 11, 12]), Histogram.of([1000, 2000])
    before = high.to_json()
    low.merge(high)
    low.merge(high)

    assert high.to_json() == before
    assert low.total == 7 and dict(low.items())[bucket_value(bucket_of(1000))] == 2


def test_a_histogram_is_stored_as_one_run_of_counts_and_read_back():
    histogram = Histogram.of([0, 100, 100, 104, 300])
    stored = json.loads(json.dumps(histogram.to_json()))

    assert set(stored) == {"zero", "from", "counts"}
    assert stored["zero"] == 1 and stored["from"] == bucket_of(100)
    assert len(stored["counts"]) == bucket_of(300) - bucket_of(100) + 1
    assert Histogram.from_json(stored) == histogram
    assert Histogram.from_json({}) == Histogram() and not Histogram.from_json({})


@pytest.mark.parametrize("percent", [0, 1, 50, 99, 100])
def test_percentiles_of_one_value_are_that_value(percent):
    assert Histogram.of([250]).percentile(percent) == pytest.approx(250, rel=0.01)
