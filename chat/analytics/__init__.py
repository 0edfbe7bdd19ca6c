"""Usage and cost analytics for staff: the summary the admin's analytics page shows
(`summary`), the daily roll-ups it reads (`rollups`, `rollup_ratings`), latency histograms as runs
of counts (`histograms`), and the seeded history benchmarks and demos use (`seeding`).
"""
