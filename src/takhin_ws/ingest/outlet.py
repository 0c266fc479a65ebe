"""Where the metrics producer's messages go: one door, and failures said once.

:class:`Outlet` is the producer's only output. A snapshot goes on the ``metrics``
stream of the ingress's bus (``EventBus.publish``); each change event goes through
the ingress's detector door (``EventIngress.detected``), which checks it once,
drops what the ingress announced itself, and publishes it on the same bus. So the
in-memory bus and a shared one (Redis) take the same path.

- A publish that fails (a shared bus whose server is down) is logged as a warning
  for the first of a streak and at debug level after it; the first that works
  again is an info line. What failed is dropped: the next tick has fresher news.
- An event the ingress refuses (a topic name Kafka would refuse, an empty group id)
  is counted and logged once per topic or group, up to :data:`MAX_REPORTED_NAMES`.
- :class:`~takhin_ws.HubClosedError` propagates: the hub is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from .._exceptions import HubClosedError, LocalProtocolError
from ..core.metrics.snapshot import MetricsSourceError
from ..wire.events import Event
from ..wire.messages import MonitoringMetrics, Payload
from .bus import BusUnavailableError
from .ingress import EventIngress

__all__ = ["MAX_REPORTED_NAMES", "Outlet", "describe_error"]

logger: Final = logging.getLogger("takhin_ws.metrics")

#: Invalid topic names and group ids from a source each logged once, up to this many.
MAX_REPORTED_NAMES: Final = 1000


class Outlet:
    """The producer's door to *ingress* (see the module's text); *source* names the
    metrics source in the warnings about what it reports."""

    def __init__(self, ingress: EventIngress, source: str) -> None:
        self.ingress = ingress
        self.source = source
        #: Change events handed to the ingress (published, or found already announced).
        self.events = 0
        #: Change events the ingress refused.
        self.invalid_events = 0
        #: Snapshots published fresh, and published again as stale.
        self.snapshots = 0
        self.stale_snapshots = 0
        self._failing = False
        self._reported: set[str] = set()

    async def snapshot(self, metrics: MonitoringMetrics, *, stale: bool) -> None:
        """Publish *metrics* on the ``metrics`` stream of the bus."""
        try:
            await self.ingress.bus.publish("metrics", metrics, stale=stale)
        except HubClosedError:
            raise
        except Exception as exc:
            self._failed(metrics, exc)
            return
        self._worked()
        if stale:
            self.stale_snapshots += 1
        else:
            self.snapshots += 1

    async def announce(self, events: Iterable[Event]) -> None:
        """Hand *events* to the ingress's detector door, in order."""
        for event in events:
            try:
                await self.ingress.detected(event)
            except HubClosedError:
                raise
            except LocalProtocolError as exc:  # the ingress's one check refused it
                self._refused(event, exc)
                continue
            except Exception as exc:
                self._failed(event, exc)
                continue
            self._worked()
            self.events += 1

    def _refused(self, event: Event, exc: LocalProtocolError) -> None:
        self.invalid_events += 1
        reason = exc.__cause__ or exc  # the broken rule, without the path
        name = f"{event.KIND} {event.subject!r}"
        if name in self._reported:
            logger.debug("skipping the %s event of %s: %s", event.TYPE, name, reason)
        elif len(self._reported) < MAX_REPORTED_NAMES:
            self._reported.add(name)
            logger.warning(
                "metrics source %s reports %s, which cannot be announced (%s); "
                "skipping its change events",
                self.source,
                name,
                reason,
            )

    def _failed(self, payload: Payload, exc: Exception) -> None:
        if not self._failing:
            logger.warning(
                "could not publish the %s message: %s; dropping what cannot be "
                "published until publishing works again",
                payload.TYPE,
                describe_error(exc),
                exc_info=None if isinstance(exc, BusUnavailableError) else exc,
            )
        else:
            logger.debug("could not publish the %s message: %s", payload.TYPE, exc)
        self._failing = True

    def _worked(self) -> None:
        if self._failing:
            logger.info("publishing works again")
            self._failing = False


def describe_error(error: BaseException) -> str:
    """*error* for a log line: a source's own error by its text, others with their type."""
    text = str(error)
    if isinstance(error, MetricsSourceError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
