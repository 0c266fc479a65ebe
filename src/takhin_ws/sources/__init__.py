"""Metrics sources: where snapshots come from (one module per source).

- :mod:`~takhin_ws.sources.synthetic`: a seeded, self-consistent fake cluster (the default);
- :mod:`~takhin_ws.sources.prometheus`: a Takhin broker's Prometheus exposition;
- :mod:`~takhin_ws.sources.promql`: the PromQL arithmetic (counter increase, histogram
  quantiles) the Prometheus and synthetic sources share.

Every source implements :class:`takhin_ws.MetricsSource` (``collect() -> Snapshot``).
"""

from .prometheus import PrometheusSource, ScrapeError
from .synthetic import SyntheticSource

__all__ = ["PrometheusSource", "ScrapeError", "SyntheticSource"]
