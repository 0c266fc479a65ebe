"""The metrics lease: which node of a cluster collects the metrics (leader election).

One node at a time holds ``<prefix>:metrics-lease`` (a string with a TTL, holding the
node's id). :meth:`MetricsLease.hold` is the producer's ``should_collect`` hook: it
takes the lease if free or renews it if held, before each tick; a holder that stops
renewing (it died) loses it when the TTL runs out, and another node takes over at its
next tick. A node that stops cleanly releases it at once (:meth:`MetricsLease.aclose`).
Redis unreachable counts as "not held": no node collects until it answers again.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final

import trio
from coredis.exceptions import RedisError

from .connection import DEFAULT_PREFIX, Keys, describe, new_node_id, open_client, where
from .entries import text
from .scripts import LEASE_HOLD, LEASE_RELEASE

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["LEASE_TICKS", "MIN_LEASE_TTL", "MetricsLease"]

log: Final = logging.getLogger("takhin_ws.cluster")

#: Collect periods the lease outlives its last renewal (for :meth:`MetricsLease.for_settings`).
LEASE_TICKS: Final = 3
#: The shortest TTL :meth:`MetricsLease.for_settings` gives the lease, in seconds.
MIN_LEASE_TTL: Final = 1.0
#: The longest wait for Redis to confirm a release (shutdown should not wait for it).
RELEASE_TIMEOUT: Final = 1.0
#: What :meth:`MetricsLease.hold` found when Redis did not answer (a lease state).
UNREACHABLE: Final = ""


class MetricsLease:
    """The metrics lease of one node, in the Redis at *url*.

    Start :meth:`run` in a nursery (``await nursery.start(lease.run)``): it owns the
    Redis client, open while it runs. *ttl* is how long the lease outlives its last
    renewal, *timeout* the deadline of one Redis call, *node_id* this node's name in
    the lease (``host:pid:random`` by default).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 6.0,
        timeout: float = 5.0,
        node_id: str | None = None,
    ) -> None:
        if not (ttl > 0 and timeout > 0):
            raise ValueError("ttl and timeout must be positive")
        self.url = url
        self.where = where(url)
        self.key = Keys(prefix).lease
        self.ttl = ttl
        self.timeout = timeout
        self.node_id = node_id or new_node_id()
        self._client = open_client(url, timeout=timeout)
        self._hold_script = self._client.register_script(LEASE_HOLD)
        self._release_script = self._client.register_script(LEASE_RELEASE)
        self._running = False
        self._open = False
        self._held = False
        #: the holder's node id at the last attempt, UNREACHABLE, or None before one
        self._holder: str | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> MetricsLease:
        """The server's lease for ``--redis-url``: it outlives :data:`LEASE_TICKS`
        collect periods (``max(--interval, --collect-timeout)``, at least
        :data:`MIN_LEASE_TTL`) without renewal."""
        if settings.redis_url is None:
            raise ValueError("settings.redis_url is not set")
        tick = max(settings.interval, settings.collect_timeout or settings.interval)
        return cls(settings.redis_url, ttl=max(LEASE_TICKS * tick, MIN_LEASE_TTL))

    @property
    def held(self) -> bool:
        """Whether this node held the lease at its last attempt."""
        return self._held

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Redis client open until cancelled (it connects on first use)."""
        if self._running:
            raise RuntimeError("this MetricsLease is already running")
        self._running = True
        try:
            async with self._client:
                self._open = True
                try:
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    self._open = False
                    self._held = False
                    self._holder = None
        finally:
            self._running = False

    @property
    def holder(self) -> str | None:
        """The node id that held the lease at the last attempt (this one's included),
        ``""`` when Redis did not answer, ``None`` before a first attempt."""
        return self._holder

    async def hold(self) -> bool:
        """Take the lease if free, or renew it if this node holds it; True when this
        node holds it now. False when another node does, Redis is unreachable, or
        :meth:`run` is not running. (The ``should_collect`` hook of
        :class:`~takhin_ws.MetricsProducer`.)

        The first answer and every change (taken, held by another node, Redis
        unreachable) is logged once, on the ``takhin_ws.cluster`` logger."""
        if not self._open:
            self._held = False
            return False
        ttl_ms = max(1, math.ceil(self.ttl * 1000))
        try:
            with trio.fail_after(self.timeout):
                reply: Any = await self._hold_script([self.key], [self.node_id, ttl_ms])
        except (RedisError, OSError, trio.TooSlowError) as exc:
            self._note(UNREACHABLE, describe(exc))
        else:
            self._note(self.node_id if reply == 1 else text(reply), "")
        return self._held

    def _note(self, holder: str, reason: str) -> None:
        """Record who holds the lease now; log it when that changed."""
        held = holder == self.node_id
        if holder != self._holder:
            lost = (
                f"this node ({self.node_id}) no longer collects the metrics: "
                if (self._held and not held)
                else ""
            )
            if held:
                log.info("this node (%s) now collects the metrics (lease taken)", self.node_id)
            elif holder == UNREACHABLE:
                log.warning(
                    "%smetrics lease: Redis at %s does not answer (%s); no node collects "
                    "until it does",
                    lost,
                    self.where,
                    reason,
                )
            else:
                log.info(
                    "%sanother node (%s) collects the metrics (it holds the lease); this "
                    "node serves the snapshots it publishes",
                    lost,
                    holder,
                )
        elif holder == UNREACHABLE:
            log.debug("metrics lease: Redis at %s: %s", self.where, reason)
        self._holder = holder
        self._held = held

    async def release(self) -> None:
        """Give the lease up (if held) so another node takes over at once. Never raises."""
        if not (self._open and self._held):
            return
        self._held = False
        try:
            with trio.move_on_after(min(self.timeout, RELEASE_TIMEOUT)):
                await self._release_script([self.key], [self.node_id])
        except (RedisError, OSError) as exc:
            log.debug("could not release the metrics lease: %s", describe(exc))

    async def aclose(self) -> None:
        """Prepare to stop: release the lease. (``run``'s end closes the client.)"""
        await self.release()
