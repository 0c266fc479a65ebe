"""The ``prometheus`` metrics source: a Takhin broker's ``/metrics`` endpoint.

:class:`PrometheusSource` puts three pieces together on every :meth:`~PrometheusSource.collect`:

1. :class:`~takhin_ws.sources.prometheus.scrape.Scraper` GETs the exposition (gzip accepted),
   within the deadline and the body limit;
2. in a worker thread (the event loop keeps serving clients meanwhile), the body is
   inflated and decoded, and the :class:`~takhin_ws.sources.prometheus.scan.ExpositionScanner`
   reads the families the snapshot needs and nothing else, and
3. :func:`~takhin_ws.sources.prometheus.snapshot.compute_snapshot` derives the ``metrics``
   message from this scrape and the previous good one (rates, quantiles, lag).

``docs/metrics.md`` defines every field and the cost per cluster size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import ClassVar, Final

import httpx
import trio

from ...core.metrics.snapshot import Snapshot
from .scan import ExpositionScanner, parse_exposition
from .scrape import DEFAULT_MAX_BODY_BYTES, Body, ScrapeError, Scraper
from .series import Exposition
from .snapshot import READ_SAMPLES, STATE_CODES, Scrape, compute_snapshot, group_state

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "READ_SAMPLES",
    "STATE_CODES",
    "Exposition",
    "PrometheusSource",
    "Scrape",
    "ScrapeError",
    "compute_snapshot",
    "group_state",
    "parse_exposition",
]

logger: Final = logging.getLogger("takhin_ws.metrics")

#: Longest reason quoted from a parse error.
_REASON: Final = 160


class PrometheusSource:
    """Scrape ``url`` (a Takhin broker's ``/metrics``) on every :meth:`collect`.

    A collect (scrape, scan and computation) must finish within *timeout* seconds and
    the body may hold at most *max_body_bytes* bytes (after decompression); a collect
    that fails raises :class:`ScrapeError` saying which limit to raise, and leaves the
    previous good scrape as the base of the next rates. Pass *client* to share an
    ``httpx.AsyncClient`` (it is then not closed by :meth:`aclose`). *clock*
    (monotonic) times the rate window; *wall_clock* stamps the message.
    """

    #: What clients are told the data comes from (``welcome``, ``/readyz``).
    kind: ClassVar[str] = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._scraper = Scraper(url, timeout=timeout, max_body_bytes=max_body_bytes, client=client)
        self.url = url
        self.timeout = float(timeout)
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._wall_clock = wall_clock
        self._scanner = ExpositionScanner(READ_SAMPLES)
        # one scan at a time: a scan abandoned at the deadline holds it until it ends
        self._limiter = trio.CapacityLimiter(1)
        self._previous: Scrape | None = None
        self._warned_empty = False

    async def __aenter__(self) -> PrometheusSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"PrometheusSource({self._scraper.shown!r}, timeout={self.timeout:g})"

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        await self._scraper.aclose()

    async def collect(self) -> Snapshot:
        deadline = trio.current_time() + self.timeout
        # the scrape's time is when it started, as Prometheus stamps samples: how long
        # a big body takes to arrive varies, the moment the broker was asked less so
        taken = self._clock()
        wall = self._wall_clock()
        body = await self._scraper.fetch()
        with trio.move_on_at(deadline) as scope:
            scrape, snapshot = await trio.to_thread.run_sync(
                self._process,
                body,
                taken,
                wall,
                limiter=self._limiter,
                abandon_on_cancel=True,
            )
        if scope.cancelled_caught:
            raise ScrapeError(
                f"reading the scrape of {self._scraper.shown} did not finish within "
                f"{self.timeout:g} s "
                "(the scrape may use 0.9 x --collect-timeout, which defaults to --interval: "
                "raise one of them)"
            )
        self._previous = scrape
        if not scrape.samples and not self._warned_empty:
            self._warned_empty = True
            logger.warning(
                "%s exposes none of the takhin_* metrics this source reads: is it a "
                "Takhin broker's /metrics endpoint? (reporting zeros)",
                self._scraper.shown,
            )
        return snapshot

    def _process(self, body: Body, taken: float, wall: float) -> tuple[Scrape, Snapshot]:
        """Inflate, decode, scan and compute (in a worker thread)."""
        content = body.content(prefix=b"\n")
        try:
            text = content.decode("utf-8")
            samples = self._scanner.scan(text, prefixed=True)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            reason = " ".join(str(exc).split())
            if len(reason) > _REASON:
                reason = reason[:_REASON] + "..."
            raise ScrapeError(
                f"{self._scraper.shown} did not answer Prometheus text exposition: {reason}"
            ) from None
        scrape = Scrape(samples, taken, wall)
        return scrape, compute_snapshot(self._previous, scrape)

    async def fetch(self) -> bytes:
        """The body of one scrape (bounded in time and size), inflated."""
        return (await self._scraper.fetch()).content()
