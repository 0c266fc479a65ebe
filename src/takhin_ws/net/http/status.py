"""Where the metrics stand, as ``/readyz`` tells it (the dashboard reads it too).

A page that has no snapshot to show must say why, and since when: the producer knows
(its statistics); this module turns them into the ``metrics`` object of the
``/readyz`` body. ``/readyz`` needs no API key, so what it quotes of a source's
error is made fit to be public first: credentials in a URL (``//user:secret@host``)
are masked and the text is bounded.
"""

from __future__ import annotations

from typing import Final

import attrs
from attrs import frozen

from ...ingest.producer import MetricsStatistics
from ...sources.prometheus.scrape import mask_credentials
from ...wire.converter import camel

__all__ = ["MAX_ERROR_LENGTH", "MetricsStatus", "metrics_status", "public_error"]

#: Longest source error quoted by ``/readyz`` (characters; longer ones are cut).
MAX_ERROR_LENGTH: Final = 300


@frozen(kw_only=True)
class MetricsStatus:
    """The ``metrics`` object of ``/readyz`` (camelCase keys on the wire)."""

    #: The source's kind: ``synthetic`` (simulated data), ``prometheus``, ``kafka``...
    source: str
    #: False while another node collects (cluster mode: it holds the metrics lease).
    collecting: bool
    #: Whether the server has a snapshot to send (a client gets it on connect).
    snapshot: bool
    #: Whether the last snapshot published was the last good one again.
    stale: bool
    #: Unix seconds of the last good collect (``None``: the source never worked).
    last_success: float | None
    #: Unix seconds of the first failed collect of the current streak (``None``: no streak).
    failing_since: float | None
    #: Collects failed in a row (0 while collects succeed).
    failures: int
    #: Why the last collect failed (``None`` while collects succeed).
    error: str | None

    def as_json(self) -> dict[str, object]:
        return {camel(name): value for name, value in attrs.asdict(self).items()}


def public_error(text: str) -> str:
    """*text* with URL credentials masked, at most :data:`MAX_ERROR_LENGTH` characters."""
    text = mask_credentials(text)
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def metrics_status(kind: str, stats: MetricsStatistics, *, snapshot: bool) -> MetricsStatus:
    """The status of a producer whose source is of *kind*; *snapshot*: the hub has one."""
    return MetricsStatus(
        source=kind,
        collecting=stats.collecting,
        snapshot=snapshot,
        stale=stats.stale,
        last_success=stats.last_success,
        failing_since=stats.failing_since,
        failures=stats.failure_streak,
        error=None if stats.error is None else public_error(stats.error),
    )
