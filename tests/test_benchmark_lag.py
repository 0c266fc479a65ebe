"""The lag benchmark of docs/benchmarks.md runs, on a small cluster (no timing asserted:
the figures are the benchmark's business)."""

from __future__ import annotations

from benchmarks.lag_tick import STALLS_EVERY, run


def test_the_lag_benchmark_runs_and_its_cluster_shows_every_kind_of_group() -> None:
    result = run("20x3x14", ticks=8, window=3)
    assert result["partitions"] == 60
    assert result["lags"] == 14 * 4 * 3
    statuses = result["statuses"]
    assert statuses["STALLED"] == len(range(0, 14, STALLS_EVERY))
    assert statuses["LAGGING"] >= 1
    assert statuses["OK"] >= 1
    assert result["bytes_29"] < result["bytes_before"] <= result["bytes_after"]
    assert result["memory"] > 0
    assert result["observe_ms"] >= 0.0
