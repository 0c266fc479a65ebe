"""Metrics sources: where snapshots come from (one module per source).

- :mod:`~takhin_ws.sources.synthetic`: a seeded, self-consistent fake cluster (the default);
- :mod:`~takhin_ws.sources.prometheus`: a Takhin broker's Prometheus exposition;
- :mod:`~takhin_ws.sources.promql`: the PromQL arithmetic (counter increase, histogram
  quantiles) the Prometheus and synthetic sources share.

Every source implements :class:`takhin_ws.MetricsSource` (``collect() -> Snapshot``).
:func:`source_for` builds the one a :class:`~takhin_ws.Settings` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .prometheus import PrometheusSource, ScrapeError
from .synthetic import SyntheticSource

if TYPE_CHECKING:
    from .._config import Settings
    from .._snapshot import MetricsSource

__all__ = ["PrometheusSource", "ScrapeError", "SyntheticSource", "close_source", "source_for"]

#: Share of the collect deadline a Prometheus scrape may use.
SCRAPE_SHARE: Final = 0.9


def source_for(settings: Settings) -> MetricsSource:
    """The source *settings* names (``settings.source``), ready to collect."""
    if settings.source == "prometheus":
        assert settings.prometheus_url is not None
        # the scrape gives up a little before the producer's deadline, so the
        # error names the scrape rather than a bare timeout
        deadline = settings.collect_timeout or settings.interval
        return PrometheusSource(settings.prometheus_url, timeout=deadline * SCRAPE_SHARE)
    return SyntheticSource(
        topics=settings.synthetic_topics,
        groups=settings.synthetic_groups,
        seed=settings.synthetic_seed,
    )


async def close_source(source: MetricsSource) -> None:
    """Release what a source built by :func:`source_for` holds (an HTTP client...)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
