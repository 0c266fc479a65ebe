"""The metrics producer: one snapshot per tick for every client, from a pluggable source.

A :class:`~takhin_ws.MetricsSource` answers ``collect()`` with a
:class:`~takhin_ws.Snapshot` (see :mod:`takhin_ws.core.metrics.snapshot`). The
:class:`MetricsProducer` asks it once per tick on a drift-free schedule, publishes the
result on the ``metrics`` channel, and turns the difference between successive
snapshots into change events (:func:`takhin_ws.core.metrics.changes.diff`).

A source that fails or overruns its deadline never stops the producer: the last good
snapshot is published again with the envelope flag ``stale: true`` and the producer
stays unready (:attr:`MetricsProducer.ready`) while ``unready_after`` or more collects
in a row have failed. The first good collect ends the streak.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from attrs import frozen

from .._exceptions import HubClosedError
from ..core.hub import Hub
from ..core.lag.tracker import LagTracker
from ..core.metrics.changes import diff
from ..core.metrics.snapshot import (
    MetricsSource,
    MetricsSourceError,
    MetricsSourceIncompatibleError,
    Snapshot,
)
from ..core.series import Series
from ..wire.events import Event
from ..wire.messages import MonitoringMetrics
from .bus import let_go
from .ingress import EventIngress
from .insight import observe
from .outlet import Outlet, describe_error

__all__ = ["DEFAULT_INTERVAL", "MetricsProducer", "MetricsStatistics"]

logger: Final = logging.getLogger("takhin_ws.metrics")

#: Seconds between two snapshots (2.9 sent one every 2 s).
DEFAULT_INTERVAL: Final = 2.0


@frozen(kw_only=True)
class MetricsStatistics:
    """Counters of one producer (for ``/readyz``, logs and the server's own metrics)."""

    #: Collects of the source attempted: one per tick while this node collects (a tick
    #: whose collect fails counts too; one skipped while another node collects does not).
    ticks: int
    #: Collects that raised or overran their deadline, in total.
    failures: int
    #: Collects that failed in a row, up to now (0 after a good one).
    failure_streak: int
    #: Wall-clock time (Unix seconds) of the last good collect, ``None`` before it.
    last_success: float | None
    #: Whether the last snapshot published was the previous one again (``stale``).
    stale: bool
    #: Change events handed to the ingress (published, or found already announced).
    events: int = 0
    #: Change events the ingress refused: the source reported an invalid topic or group.
    invalid_events: int = 0
    #: Fresh snapshots published (one per good collect).
    snapshots: int = 0
    #: The last good snapshot published again, marked ``stale`` (one per failed collect
    #: after a first good one; none before it: there is nothing to repeat).
    stale_snapshots: int = 0
    #: Wall-clock time (Unix seconds) of the first failure of the current streak
    #: (``None`` while collects succeed).
    failing_since: float | None = None
    #: Why the last collect of the current streak failed (``None`` while collects succeed).
    error: str | None = None
    #: Whether that failure says the source cannot read this cluster at all (it does
    #: not speak the source's protocol: :class:`MetricsSourceIncompatibleError`).
    incompatible: bool = False
    #: False while another node collects (cluster mode: it holds the metrics lease).
    collecting: bool = True


class CollectTimeoutError(MetricsSourceError):
    """``collect`` did not return within ``collect_timeout``."""


class MetricsProducer:
    """Publish a snapshot on ``metrics`` every *interval* seconds, plus change events.

    - The schedule is drift-free: tick *k* is due at ``start + k * interval`` on Trio's
      clock; a tick that could not start on time (a slow collect) is skipped rather
      than run late, so the cadence never bunches up.
    - Each tick calls ``source.collect()`` once, within *collect_timeout* seconds
      (default: *interval*). A failing source is retried at the next tick, so it is
      asked no more often than a healthy one.
    - Everything goes out through one door, *ingress* (the server's
      :class:`~takhin_ws.EventIngress`; by default one of its own on the hub's
      in-memory bus): each snapshot by ``await ingress.bus.publish("metrics", ...)``,
      each change event by ``await ingress.detected(event)``, which checks it and
      publishes it on the same bus. The in-memory bus and a shared bus (Redis) are
      one path: nothing reaches the hub any other way.
    - On success the snapshot is published with ``stale=False``, after the change
      events found by diffing it against the previous good snapshot. The first
      snapshot yields no events; with *detect_changes* false there are none at all.
      An event the ingress refuses (a topic name Kafka would refuse, an empty group
      id) is skipped, with one warning per name.
    - On failure the last good snapshot (if any) is published again with
      ``stale=True``. The first failure of a streak is logged as a warning on the
      ``takhin_ws.metrics`` logger, the recovery as an info line, the rest at debug.
    - A publish that fails (a shared bus whose server is down) is logged the same
      way, a warning for the first of a streak, and the tick goes on.
    - :attr:`ready` is true once a snapshot was produced and while fewer than
      *unready_after* collects in a row have failed.
    - Cluster mode: *should_collect* (default ``None``: always) is awaited before
      each tick and the tick is skipped (no collect, nothing published; :attr:`ready`
      true) unless it returns true, so one node collects for all (it holds a lease);
      losing it forgets the last snapshot, so a later takeover starts without
      diffing stale state.
    - *series* (optional) gets every good snapshot, for the charts of a page that
      reloads (``history``); while another node collects, the snapshot the bus
      delivered to the hub instead (each once).
    - *lag* (optional) sees every good snapshot first: what is published, diffed and
      charted is the snapshot with the lag insight filled in (:mod:`takhin_ws.core.lag.tracker`),
      and its ``group_status`` events follow the tick's change events (even with
      *detect_changes* false). Losing the lease clears it.

    :meth:`run` runs until cancelled, or until the hub is closed. Cancellation and
    ``KeyboardInterrupt`` propagate; only :class:`Exception` from the source is
    contained.
    """

    def __init__(
        self,
        hub: Hub,
        source: MetricsSource,
        *,
        interval: float = DEFAULT_INTERVAL,
        collect_timeout: float | None = None,
        unready_after: int = 3,
        ingress: EventIngress | None = None,
        wall_clock: Callable[[], float] = time.time,
        should_collect: Callable[[], Awaitable[bool]] | None = None,
        detect_changes: bool = True,
        series: Series | None = None,
        lag: LagTracker | None = None,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if collect_timeout is None:
            collect_timeout = interval
        if not collect_timeout > 0:
            raise ValueError(f"collect_timeout must be positive, got {collect_timeout!r}")
        if unready_after < 1:
            raise ValueError(f"unready_after must be >= 1, got {unready_after!r}")
        self.hub = hub
        self.source = source
        self.interval = float(interval)
        self.collect_timeout = float(collect_timeout)
        self.unready_after = unready_after
        #: The one door of everything this producer publishes.
        self.ingress = EventIngress(hub) if ingress is None else ingress
        self._wall_clock = wall_clock
        self._snapshot: Snapshot | None = None
        self._ticks = 0
        self._failures = 0
        self._streak = 0
        self._streak_started: float | None = None
        self._last_success: float | None = None
        self._stale = False
        self._error: str | None = None
        self._incompatible = False
        self._running = False
        self._should_collect = should_collect
        self._collecting = True
        self._detect_changes = detect_changes
        self._outlet = Outlet(self.ingress, type(source).__name__)
        self.series = series
        self.lag = lag
        self._followed: tuple[str, int | None] | None = None  # the last delivered one fed

    # --- state ---

    @property
    def ready(self) -> bool:
        """A snapshot was produced and fewer than ``unready_after`` collects in a row
        have failed since. Always true while another node collects (cluster mode)."""
        if not self._collecting:
            return True
        return self._snapshot is not None and self._streak < self.unready_after

    @property
    def collecting(self) -> bool:
        """False while *should_collect* says another node collects."""
        return self._collecting

    @property
    def latest(self) -> MonitoringMetrics | None:
        """The last good metrics (what a new client is sent first), or ``None``."""
        return None if self._snapshot is None else self._snapshot.metrics

    @property
    def snapshot(self) -> Snapshot | None:
        """The last good snapshot, groups included."""
        return self._snapshot

    @property
    def stale(self) -> bool:
        """Whether the last published snapshot was a repeat of an older one."""
        return self._stale

    def statistics(self) -> MetricsStatistics:
        return MetricsStatistics(
            ticks=self._ticks,
            failures=self._failures,
            failure_streak=self._streak,
            last_success=self._last_success,
            stale=self._stale,
            events=self._outlet.events,
            invalid_events=self._outlet.invalid_events,
            snapshots=self._outlet.snapshots,
            stale_snapshots=self._outlet.stale_snapshots,
            failing_since=self._streak_started if self._streak else None,
            error=self._error if self._streak else None,
            incompatible=self._incompatible if self._streak else False,
            collecting=self._collecting,
        )

    # --- the task ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick until cancelled (or until the hub closes). Reports started at once."""
        if self._running:
            raise RuntimeError("this MetricsProducer is already running")
        self._running = True
        try:
            task_status.started()
            start = trio.current_time()
            tick = 0
            while True:
                if not await self.tick():
                    logger.debug("hub closed: metrics producer stops")
                    return
                tick = self._next_tick(tick, start, trio.current_time())
                await trio.sleep_until(start + tick * self.interval)
        finally:
            self._running = False

    def _next_tick(self, tick: int, start: float, now: float) -> int:
        """The next tick due at or after *now* (missed ticks are skipped, not bunched)."""
        late = math.ceil((now - start) / self.interval - 1e-9)
        return max(tick + 1, late)

    async def tick(self) -> bool:
        """Collect and publish once. Returns ``False`` once the hub is closed.

        :meth:`run` calls this on schedule; tests and embedding code may call it
        directly (not concurrently with :meth:`run`).
        """
        if self._should_collect is not None and not await self._may_collect():
            self._follow()
            return not self.hub.closed
        self._ticks += 1
        collected, error = await self._collect()  # in a list: let go of in steps
        if collected is not None:
            return await self._succeeded(collected)
        assert error is not None
        return await self._failed(error)

    async def _may_collect(self) -> bool:
        assert self._should_collect is not None
        try:
            collect = bool(await self._should_collect())
        except Exception as exc:
            logger.debug(
                "should_collect failed (%s): not collecting this tick", describe_error(exc)
            )
            collect = False
        if not collect and self._collecting:
            self._snapshot = None  # a later takeover must not diff against stale state
            self._stale = False
            self._streak = 0  # another node's source is the one that counts now
            self._streak_started = None
            self._error = None
            if self.lag is not None:
                self.lag.clear()
        self._collecting = collect
        return collect

    async def _collect(self) -> tuple[list[Snapshot | None] | None, Exception | None]:
        result: object = None
        error: Exception | None = None
        with trio.move_on_after(self.collect_timeout) as scope:
            try:
                result = await self.source.collect()
            except Exception as exc:
                error = exc
        if scope.cancelled_caught:
            return None, CollectTimeoutError(
                f"metrics source {type(self.source).__name__} did not answer within "
                f"{self.collect_timeout:g} s"
            )
        if error is not None:
            return None, error
        if not isinstance(result, Snapshot):
            return None, TypeError(
                f"{type(self.source).__name__}.collect() returned "
                f"{type(result).__name__}, expected a Snapshot"
            )
        return [result], None

    async def _succeeded(self, garbage: list[Snapshot | None]) -> bool:
        """Publish the collected snapshot (``garbage[0]``); let go of it and the last."""
        snapshot = garbage[0]
        assert snapshot is not None
        now = self._wall_clock()
        statuses: list[Event] = []
        if self.lag is not None:
            snapshot, statuses = await observe(self.lag, snapshot, now)
        previous, self._snapshot = self._snapshot, snapshot
        garbage.append(previous)  # let go of in steps once published
        self._last_success = now
        if self._streak:
            since = "" if self._streak_started is None else f" ({now - self._streak_started:.1f} s)"
            logger.info(
                "metrics source recovered after %d failed collect%s%s",
                self._streak,
                "" if self._streak == 1 else "s",
                since,
            )
        self._streak, self._streak_started, self._error, self._stale = 0, None, None, False
        self.hub.note_groups(snapshot.groups)  # group state for the group_detail view
        events = diff(previous, snapshot) if self._detect_changes and previous is not None else []
        if not await self._announce([*events, *statuses]):
            return False
        if self.series is not None:
            self.series.add(snapshot.metrics, now)
        published = await self._publish(snapshot.metrics, stale=False)
        del snapshot, previous
        await let_go(garbage)
        return published

    def _follow(self) -> None:
        """Another node collects: feed the series the snapshot the bus delivered."""
        item = self.hub.latest("metrics")
        if self.series is None or item is None:
            return
        seen = (self.hub.epoch, item.offset)
        if seen != self._followed:
            self._followed = seen
            try:
                self.series.add_message(item.payload)
            except ValueError as exc:
                logger.warning("cannot chart the delivered snapshot: %s", exc)

    async def _failed(self, error: Exception) -> bool:
        self._failures += 1
        self._streak += 1
        reason = self._error = describe_error(error)
        self._incompatible = isinstance(error, MetricsSourceIncompatibleError)
        if self._streak == 1:
            self._streak_started = self._wall_clock()
            logger.warning(
                "metrics source failed: %s; %s until it recovers (unready after %d "
                "failures in a row)",
                reason,
                "republishing the last snapshot as stale"
                if self._snapshot is not None
                else "no snapshot to publish",
                self.unready_after,
                exc_info=error if logger.isEnabledFor(logging.DEBUG) else None,
            )
        else:
            logger.debug("metrics source failed again (%d in a row): %s", self._streak, reason)
        if self._snapshot is None:
            return not self.hub.closed
        self._stale = True
        return await self._publish(self._snapshot.metrics, stale=True)

    async def _publish(self, metrics: MonitoringMetrics, *, stale: bool) -> bool:
        """The snapshot through the outlet; false once the hub is closed."""
        try:
            await self._outlet.snapshot(metrics, stale=stale)
        except HubClosedError:
            return False
        return not self.hub.closed

    async def _announce(self, events: list[Event]) -> bool:
        """The change events of a tick through the outlet; false once the hub is closed."""
        try:
            await self._outlet.announce(events)
        except HubClosedError:
            return False
        return not self.hub.closed
