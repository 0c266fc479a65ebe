"""Metrics sources: where snapshots come from (one subpackage per source).

- :mod:`~takhin_ws.sources.synthetic`: a seeded, self-consistent fake cluster (the
  default): the source, its groups' habits, the snapshot read off the simulation;
- :mod:`~takhin_ws.sources.prometheus`: a Takhin broker's Prometheus exposition, built
  from :mod:`~takhin_ws.sources.prometheus.scrape` (the bounded HTTP GET),
  :mod:`~takhin_ws.sources.prometheus.scan` (the scanner of wanted families) and
  :mod:`~takhin_ws.sources.prometheus.snapshot` (the snapshot from two scrapes);
- :mod:`~takhin_ws.sources.promql`: the PromQL arithmetic (counter increase, histogram
  quantiles) the Prometheus and synthetic sources share;
- :mod:`~takhin_ws.sources.kafka`: a cluster read over the Kafka protocol (needs the
  ``kafka`` extra, confluent-kafka; imported on first use), in a collector process
  (:mod:`~takhin_ws.sources.kafka.worker` runs it, :mod:`~takhin_ws.sources.kafka.process`
  is its main, :mod:`~takhin_ws.sources.kafka.pipe` the frames between them); one
  blocking tick in :mod:`~takhin_ws.sources.kafka.collector`, its requests in
  :mod:`~takhin_ws.sources.kafka.admin.client`, when to make a new client in
  :mod:`~takhin_ws.sources.kafka.recovery`, errors and secrets in
  :mod:`~takhin_ws.sources.kafka.errors`, its arithmetic in
  :mod:`~takhin_ws.sources.kafka.model`.

Every source implements :class:`takhin_ws.MetricsSource` (``collect() -> Snapshot``).
:func:`source_for` builds the one a :class:`~takhin_ws.Settings` names;
:func:`open_source` also runs it for the duration of an ``async with`` block (the
``kafka`` source runs a collector process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio

from .prometheus.source import PrometheusSource, ScrapeError
from .synthetic.source import SyntheticSource

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..core.metrics.snapshot import MetricsSource

__all__ = [
    "CUSTOM",
    "KafkaSource",
    "PrometheusSource",
    "ScrapeError",
    "SyntheticSource",
    "close_source",
    "describe_source",
    "open_source",
    "source_for",
    "source_kind",
]

#: Share of the collect deadline a Prometheus scrape may use.
SCRAPE_SHARE: Final = 0.9
#: The kind of a source that does not name one (an embedding program's own).
CUSTOM: Final = "custom"


def __getattr__(name: str) -> Any:
    if name == "KafkaSource":  # confluent-kafka is an optional dependency
        from .kafka.source import KafkaSource

        return KafkaSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def source_for(settings: Settings) -> MetricsSource:
    """The source *settings* names (``settings.source``). A ``kafka`` source must be
    entered with ``async with`` before it collects (:func:`open_source` does it)."""
    if settings.source == "kafka":
        return _kafka_source(settings)
    if settings.source == "prometheus":
        assert settings.prometheus_url is not None
        # the scrape gives up a little before the producer's deadline, so the
        # error names the scrape rather than a bare timeout
        deadline = settings.collect_timeout or settings.interval
        return PrometheusSource(
            settings.prometheus_url,
            timeout=deadline * SCRAPE_SHARE,
            max_body_bytes=settings.scrape_max_bytes,
        )
    return SyntheticSource(
        topics=settings.synthetic_topics,
        groups=settings.synthetic_groups,
        seed=settings.synthetic_seed,
    )


def _kafka_source(settings: Settings) -> MetricsSource:
    """``kafka``, merged with the broker's exposition when a Prometheus URL is given."""
    from .kafka.source import KafkaSource  # optional dependency (confluent-kafka)

    if not settings.kafka_bootstrap:
        raise ValueError("--source kafka needs --kafka-bootstrap")
    # Kafka's requests give up a little before the producer's deadline, and a
    # merged scrape a little before them, so each error names what was slow.
    timeout = (settings.collect_timeout or settings.interval) * SCRAPE_SHARE
    prometheus = None
    if settings.prometheus_url is not None:
        prometheus = PrometheusSource(
            settings.prometheus_url,
            timeout=timeout * SCRAPE_SHARE,
            max_body_bytes=settings.scrape_max_bytes,
        )
    return KafkaSource(
        settings.kafka_bootstrap,
        config=settings.kafka_config,
        timeout=timeout,
        show_internal_topics=settings.show_internal_topics,
        prometheus=prometheus,
        reset_after=settings.kafka_reset_after,
    )


def source_kind(source: object) -> str:
    """What clients are told *source* is (``welcome``, ``/readyz``, the startup log):
    its ``kind`` attribute (``synthetic``, ``prometheus``, ``kafka``,
    ``kafka+prometheus`` for the built-in ones), or ``custom``."""
    kind = getattr(source, "kind", None)
    return kind if isinstance(kind, str) and kind else CUSTOM


def describe_source(source: object) -> str:
    """One line for the startup log: the kind, whether the data is simulated, and the
    source's repr (built-in sources mask their secrets; a custom one shows its class)."""
    kind = source_kind(source)
    shown = type(source).__qualname__ if kind == CUSTOM else repr(source)
    if kind == SyntheticSource.kind:
        return f"{kind}, SIMULATED data (not a real cluster): {shown}"
    return f"{kind}: {shown}"


@asynccontextmanager
async def open_source(settings: Settings) -> AsyncIterator[MetricsSource]:
    """The source *settings* names (:func:`source_for`), running for the duration of
    the block: entered if it is an async context manager (``kafka`` starts its collector
    process), closed at the end."""
    source = source_for(settings)
    if isinstance(source, AbstractAsyncContextManager):
        async with source:
            yield source
        return
    try:
        yield source
    finally:
        with trio.CancelScope(shield=True):
            await close_source(source)


async def close_source(source: MetricsSource) -> None:
    """Release what a source built by :func:`source_for` holds (an HTTP client...)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
