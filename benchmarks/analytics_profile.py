"""Where the analytics page's time goes: `chat.analytics.summary.usage_summary` in-process, for the
periods and filters `benchmarks/admin_pages.py` measures, on the database that benchmark seeded.

    .venv/bin/python -m benchmarks.admin_pages --replies 1000000      # seed once
    .venv/bin/python -m benchmarks.analytics_profile                  # every case
    .venv/bin/python -m benchmarks.analytics_profile 90 --profile     # and a profile of one

Prints, per case, the best and median of `--runs` warm calls (wall clock and CPU), the number of
queries and their time; with `--profile`, the functions that took longest (cProfile), and with
`--queries` the slowest queries. `--live-days 1` reads the last finished day from its replies as
if it were today's (the page reads today live): late in a day, today holds a whole day's replies,
but a database seeded just after midnight holds hardly any.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
from datetime import timedelta
from typing import Any

from benchmarks.admin_pages import BENCH_DIR, heaviest_user

os.environ["CHATSITE_DATA_DIR"] = str(BENCH_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

CASES = ("7", "30", "90", "model", "source", "anonymous", "user", "range")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=list(CASES), help=", ".join(CASES))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each case")
    parser.add_argument("--queries", action="store_true", help="print the slowest queries")
    parser.add_argument(
        "--live-days", type=int, default=0, help="read the last N finished days live, as today"
    )
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(
            f"unknown cases: {', '.join(sorted(unknown))} (choose from {', '.join(CASES)})"
        )

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from chat.analytics import summary as analytics
    from chat.analytics.filters import UsageFilter
    from chat.analytics.report import Period
    from chat.analytics.summary import usage_summary

    heavy_user = heaviest_user()
    today = timezone.localdate()
    cases = {
        "7": (Period.last(7), UsageFilter()),
        "30": (Period.last(30), UsageFilter()),
        "90": (Period.last(90), UsageFilter()),
        "model": (Period.last(90), UsageFilter(model="gpt-4o")),
        "source": (Period.last(90), UsageFilter(source="api")),
        "anonymous": (Period.last(90), UsageFilter(owner="anonymous")),
        "user": (Period.last(30), UsageFilter(owner=f"user:{heavy_user}")),
        "range": (Period(today - timedelta(days=90), today), UsageFilter()),
    }
    if args.live_days:
        split = analytics._split
        live_from = today - timedelta(days=args.live_days)

        def split_live(*split_args: Any) -> tuple[list[Any], list[Any]]:
            rolled_up, live = split(*split_args)
            return [d for d in rolled_up if d < live_from], [
                *(d for d in rolled_up if d >= live_from),
                *live,
            ]

        analytics._split = split_live  # type: ignore[assignment]
    print("| Case | Period | Filter | Best | Median | CPU | Queries | SQL time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.cases:
        period, usage_filter = cases[name]
        usage_summary(period=period, usage_filter=usage_filter)  # builds missing roll-ups
        walls, cpus = [], []
        for _ in range(args.runs):
            started, cpu = time.perf_counter(), time.process_time()
            usage_summary(period=period, usage_filter=usage_filter)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        with CaptureQueriesContext(connection) as captured:
            usage_summary(period=period, usage_filter=usage_filter)
        queries = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
        sql_ms = sum(float(q["time"]) for q in queries) * 1000
        shown = {key: value for key, value in vars(usage_filter).items() if value} or "none"
        print(
            f"| {name} | {period.length} days | {shown} | {min(walls) * 1000:.0f} ms "
            f"| {statistics.median(walls) * 1000:.0f} ms | {min(cpus) * 1000:.0f} ms "
            f"| {len(queries)} | {sql_ms:.0f} ms |"
        )
        if args.queries:
            for query in queries[:5]:
                print(f"    {float(query['time']) * 1000:.0f} ms  {query['sql'][:160]}")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            usage_summary(period=period, usage_filter=usage_filter)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())


if __name__ == "__main__":
    main()
