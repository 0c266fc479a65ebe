"""Latency histograms: log-spaced bins shared by the load clients and the harness."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.loadclient import HIST_BINS, HIST_HI, HIST_LO

_WIDTH = (HIST_HI - HIST_LO) / HIST_BINS


def merge_hist(hists: Sequence[Sequence[int]]) -> list[int]:
    out = [0] * HIST_BINS
    for hist in hists:
        for i, count in enumerate(hist):
            out[i] += count
    return out


def upper_edges() -> list[float]:
    """The upper edge of every bin, in seconds."""
    return [10 ** (HIST_LO + (i + 1) * _WIDTH) for i in range(HIST_BINS)]


def percentile(hist: Sequence[int], q: float) -> float:
    """The *q*-th percentile in seconds (geometric interpolation within the bin)."""
    total = sum(hist)
    if total == 0:
        return float("nan")
    rank = q / 100 * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            frac = (rank - seen) / count
            return float(10 ** (HIST_LO + (i + frac) * _WIDTH))
        seen += count
    return float(10**HIST_HI)


def cdf(hist: Sequence[int]) -> tuple[list[float], list[float]]:
    """(seconds, cumulative fraction) at the upper edge of each non-empty bin."""
    total = sum(hist)
    xs: list[float] = []
    ys: list[float] = []
    if total == 0:
        return xs, ys
    seen = 0
    for edge, count in zip(upper_edges(), hist, strict=True):
        if count:
            seen += count
            xs.append(edge)
            ys.append(seen / total)
    return xs, ys
