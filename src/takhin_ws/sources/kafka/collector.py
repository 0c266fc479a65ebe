"""One tick of the ``kafka`` source, blocking: a whole snapshot or an error.

:class:`KafkaCollector` owns the client (:class:`~takhin_ws.sources.kafka.admin.client.KafkaAdmin`),
the previous observation (rates are offset deltas between ticks) and the recovery
policy (:mod:`takhin_ws.sources.kafka.recovery`): it makes a new client when the old one
stops finding its way. One tick reads the topics and their offsets while a helper
thread reads the consumer groups (both under the tick's deadline), then computes the
snapshot (:mod:`takhin_ws.sources.kafka.model`). Every call blocks: run it in a worker
thread or in the collector process.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from ...config.settings import DEFAULT_KAFKA_RESET_AFTER
from ...core.metrics.snapshot import GroupInfo, Snapshot
from .admin.client import DESCRIBE_BATCH, Committed, KafkaAdmin
from .admin.requests import logger
from .errors import KafkaSourceError
from .model import Observation, compute_snapshot
from .recovery import Recovery

__all__ = ["DEFAULT_RESET_AFTER", "METADATA_REFRESH", "REQUEST_SHARE", "KafkaCollector"]

#: Failed ticks in a row before the client is closed and a new one made.
DEFAULT_RESET_AFTER: Final = DEFAULT_KAFKA_RESET_AFTER
#: Share of a tick's time the requests may use: they give up a little before it, so
#: the error says which request failed and why (and what the client reported).
REQUEST_SHARE: Final = 0.9
#: Seconds the topics, partitions and leaders of the last metadata are used again
#: (12,000 partitions of metadata are ~7 ms of CPU over the protocol, ~40 ms through
#: librdkafka, and work for the broker): a new topic or partition shows within this
#: long. A failed tick, a partition gone or answering from elsewhere (a leader that
#: moved) make the next tick ask again.
METADATA_REFRESH: Final = 10.0


class KafkaCollector:
    """Read the cluster at *bootstrap* one tick at a time (see the module docstring).

    *clock* (monotonic) times the rate window; *wall_clock* stamps the message.
    """

    def __init__(
        self,
        bootstrap: str,
        config: Iterable[tuple[str, str]] = (),
        *,
        show_internal_topics: bool = False,
        describe_batch: int = DESCRIBE_BATCH,
        reset_after: int = DEFAULT_RESET_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if describe_batch < 1:
            raise ValueError(f"describe_batch must be >= 1, got {describe_batch!r}")
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self.show_internal_topics = show_internal_topics
        self.describe_batch = describe_batch
        self.recovery = Recovery(reset_after)
        self._clock = clock
        self._wall_clock = wall_clock
        self._previous: Observation | None = None
        self._reachable = False
        #: The partition ids of the last metadata, and when it was read (monotonic).
        self._partitions: dict[str, list[int]] | None = None
        self._partitions_read = -math.inf
        self._helper = concurrent.futures.ThreadPoolExecutor(1, "takhin-ws-kafka-groups")
        self.admin = self._new_admin()

    def _new_admin(self) -> KafkaAdmin:
        return KafkaAdmin(self.bootstrap, self.config, describe_batch=self.describe_batch)

    def close(self) -> None:
        """Destroy the client and stop the helper thread (blocks briefly)."""
        self._helper.shutdown(wait=True)
        self.admin.close()

    @property
    def first(self) -> bool:
        """No tick has succeeded yet."""
        return self._previous is None

    def collect(self, timeout: float) -> Snapshot:
        """One tick within *timeout* seconds: a whole snapshot, or
        :class:`KafkaSourceError` (and maybe a new client for the next tick)."""
        began = time.monotonic()
        deadline = began + timeout * REQUEST_SHARE
        self.admin.hard_deadline = began + timeout
        self._reachable = False
        try:
            observation = self._observe(deadline)
        except KafkaSourceError as exc:
            self._partitions = None
            if self.recovery.failed(time.monotonic(), reachable=self._reachable):
                self._reset(exc)
            raise
        snapshot = compute_snapshot(
            self._previous, observation, show_internal_topics=self.show_internal_topics
        )
        self._previous = observation
        self.recovery.succeeded()
        self.admin.succeeded()
        return snapshot

    def _reset(self, cause: KafkaSourceError) -> None:
        recovery = self.recovery
        (logger.warning if recovery.resets == 1 else logger.info)(
            "kafka %s: %d ticks in a row failed, the last with: %s; closing the client and "
            "opening a new one (%s of this outage)",
            self.bootstrap,
            recovery.streak,
            cause,
            "the first" if recovery.resets == 1 else f"number {recovery.resets}",
        )
        old, self.admin = self.admin, self._new_admin()
        old.close()

    def _observe(self, deadline: float) -> Observation:
        known = {} if self._previous is None else self._previous.groups
        partitions = self._partitions
        now = time.monotonic()
        refresh = (
            partitions is None
            or now - self._partitions_read >= METADATA_REFRESH
            or self.admin.metadata_outdated
        )
        # one periodic job a tick: the start offsets' refresh and a turn of group
        # descriptions wait a tick that reads the metadata
        self.admin.metadata_tick = refresh
        groups = self._helper.submit(self._groups, deadline, known)
        try:
            if refresh or partitions is None:
                partitions = self._partitions = self._metadata(deadline)
                self._partitions_read = now
                self._reachable = True
            offsets = self._offsets(partitions, deadline)
            self._reachable = True  # (the offsets came back, if the metadata was not asked)
        except BaseException:
            # the groups chain ends by the deadline too; a tick never overlaps the next
            concurrent.futures.wait([groups])
            raise
        infos, committed = groups.result()
        return Observation(
            monotonic=self._clock(),
            wall=self._wall_clock(),
            partitions={topic: len(ids) for topic, ids in partitions.items() if topic in offsets},
            offsets=offsets,
            groups=infos,
            committed=committed,
        )

    # --- the blocking requests (a test may wrap them) ---

    def _metadata(self, deadline: float) -> dict[str, list[int]]:
        return self.admin.metadata(deadline)

    def _offsets(
        self, partitions: dict[str, list[int]], deadline: float
    ) -> dict[str, dict[int, tuple[int, int]]]:
        return self.admin.offsets(partitions, deadline)

    def _groups(
        self, deadline: float, known: Mapping[str, GroupInfo]
    ) -> tuple[dict[str, GroupInfo], dict[str, Committed]]:
        return self.admin.groups(deadline, known)
