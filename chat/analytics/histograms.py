"""Latency histograms that merge across days and models: buckets 2 % wide on a log scale, so a
bucket's middle is within 1 % of every value in it and percentiles of merged histograms are exact
to within 1 %.

A histogram is kept as one run of counts from its lowest bucket to its highest (plus a count of
values at or below zero), and stored that way as JSON (`{"zero": 0, "from": 300, "counts": [..]}`):
merging two is then a slice of element-wise additions done in C (`map(operator.add, ...)`) rather
than a Python loop over a dict's keys, which was most of a 90-day analytics page's time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(BUCKET_RATIO)


def bucket_of(value: float) -> int | None:
    """The value's bucket; None for values at or below zero (they have a bucket of their own)."""
    if value <= 0:
        return None
    return round(math.log(value) / _LOG_RATIO)


def bucket_value(bucket: int | None) -> float:
    return 0.0 if bucket is None else BUCKET_RATIO**bucket


class Histogram:
    """Counts by bucket: `zero` values at or below zero, then `counts[i]` values in bucket
    `start + i`."""

    __slots__ = ("counts", "start", "zero")

    def __init__(self, zero: int = 0, start: int = 0, counts: list[int] | None = None) -> None:
        self.zero = zero
        self.start = start
        self.counts = counts if counts is not None else []

    @classmethod
    def of(cls, values: Iterable[float]) -> Histogram:
        histogram = cls()
        for value in values:
            histogram.add_value(value)
        return histogram

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Histogram:
        if not data:
            return cls()
        return cls(data.get("zero", 0), data.get("from", 0), list(data.get("counts", ())))

    def to_json(self) -> dict[str, Any]:
        return {"zero": self.zero, "from": self.start, "counts": self.counts}

    def copy(self) -> Histogram:
        return Histogram(self.zero, self.start, list(self.counts))

    def add_value(self, value: float, count: int = 1) -> None:
        bucket = bucket_of(value)
        if bucket is None:
            self.zero += count
            return
        self._cover(bucket, bucket + 1)
        self.counts[bucket - self.start] += count

    def merge(self, other: Histogram) -> None:
        """Add `other`'s counts to these."""
        self.zero += other.zero
        if not other.counts:
            return
        end = other.start + len(other.counts)
        self._cover(other.start, end)
        low = other.start - self.start
        high = low + len(other.counts)
        self.counts[low:high] = map(operator.add, self.counts[low:high], other.counts)

    def _cover(self, start: int, end: int) -> None:
        """Widen the run of counts to cover buckets `start` to `end` (excluded)."""
        if not self.counts:
            self.start, self.counts = start, [0] * (end - start)
            return
        if start < self.start:
            self.counts[:0] = [0] * (self.start - start)
            self.start = start
        missing = end - self.start - len(self.counts)
        if missing > 0:
            self.counts.extend([0] * missing)

    @property
    def total(self) -> int:
        return self.zero + sum(self.counts)

    def __bool__(self) -> bool:
        return bool(self.zero or any(self.counts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Histogram({dict(self.items())!r})"

    def items(self) -> Iterator[tuple[float, int]]:
        """(bucket value, count) of each bucket holding values, lowest first."""
        if self.zero:
            yield 0.0, self.zero
        for offset, count in enumerate(self.counts):
            if count:
                yield bucket_value(self.start + offset), count

    def percentile(self, percent: float) -> float | None:
        """Nearest rank: the smallest value with at least `percent` % of the values at or below
        it (to within 1 %)."""
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(percent / 100 * total))
        seen = self.zero
        if seen >= rank:
            return 0.0
        for offset, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return bucket_value(self.start + offset)
        return None  # pragma: no cover - unreachable: `seen` reaches `total`
