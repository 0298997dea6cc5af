"""Benchmarks: scripts that print figures (docs/benchmarks.md), run from a checkout as
`.venv/bin/python bench/<script>.py`. Loopback only, each bounded in time.

Shared pieces: `scratch` (a scratch database on the embedded PostgreSQL, worker processes, the
machine's load, CPU counters, percentiles) and `bigtable` (a million finished jobs).
"""
