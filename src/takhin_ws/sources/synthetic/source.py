"""The ``synthetic`` metrics source: a seeded simulation of a Takhin cluster.

The default source of ``python -m takhin_ws``, for demos, front-end work and
benchmarks. It simulates topics with partitions, produce traffic that swells and
ebbs with noise, consumer groups whose consumption speed oscillates around the
produce rate (so lag grows and shrinks), latency histograms with a slow tail,
rebalances (``Stable -> PreparingRebalance -> CompletingRebalance -> Stable`` with a
new member count), groups that empty, die and are replaced, and topics created and
deleted now and then, so every change event shows up within minutes; and groups with
habits (:mod:`~takhin_ws.sources.synthetic.habits`: one stalls, one rewinds its
offsets, one stops now and then) so every lag status does too.

Everything is drawn from one ``random.Random(seed)`` and advanced by the time the
injected *clock* says has passed between collects: the same seed and the same clock
readings give the same sequence of snapshots. ``topics``/``groups`` scale the
snapshot from about 1 KB (1 and 1) to hundreds of KB (500 and 200).

This module runs the simulation; :mod:`~takhin_ws.sources.synthetic.snapshot` holds
its records and reads a snapshot off them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import ClassVar, Final

import trio

from ...core.metrics.snapshot import Snapshot
from .habits import habit_of, rewind, rewinds_now, stalled, stopped
from .snapshot import LATENCY_BUCKETS, SimGroup, SimTopic, describe

__all__ = ["LATENCY_BUCKETS", "SyntheticSource"]

logger: Final = logging.getLogger("takhin_ws.metrics")

_TOPIC_WORDS: Final = (
    "orders",
    "payments",
    "page-views",
    "clicks",
    "inventory",
    "shipments",
    "user-events",
    "sessions",
    "audit-log",
    "notifications",
    "invoices",
    "search-queries",
    "cart-updates",
    "fraud-alerts",
    "price-changes",
    "sensor-readings",
)
_GROUP_WORDS: Final = (
    "billing-service",
    "analytics",
    "fraud-detector",
    "warehouse-sync",
    "mailer",
    "search-indexer",
    "reporting",
    "archiver",
)
_PARTITION_CHOICES: Final = (1, 2, 3, 3, 4, 6, 6, 8, 12)
_MESSAGE_SIZES: Final = (180, 512, 1024, 2048, 4096)
#: Seconds simulated by the first collect (there is no previous one to measure from).
_FIRST_STEP: Final = 2.0
#: Longest step simulated at once (a paused process does not replay hours).
_MAX_STEP: Final = 300.0
#: Bytes a partition keeps on disk before old segments go.
_RETENTION_BYTES: Final = 1 << 30

#: Messages of unused reading capacity a group carries to the next step, at most.
_CARRY_LIMIT: Final = 1.0
#: Messages a second a group reads from a partition at least (at its base speed).
_MIN_READ_RATE: Final = 5.0

# Mean waiting times, in simulated seconds, of the random events.
_TOPIC_CHURN: Final = 60.0
_REBALANCE: Final = 120.0
_GROUP_EMPTIES: Final = 900.0
_GROUP_REJOINS: Final = 40.0
_GROUP_DIES: Final = 150.0
_GROUP_BORN: Final = 30.0


def _name(words: tuple[str, ...], index: int) -> str:
    generation, slot = divmod(index, len(words))
    return words[slot] if generation == 0 else f"{words[slot]}-{generation + 1}"


class SyntheticSource:
    """A deterministic simulated cluster (see the module docstring).

    *topics* and *groups* are the sizes the simulation hovers around (topic churn
    keeps the count within about 10 %); *seed* picks the cluster and its history;
    *clock* (Unix seconds) stamps each snapshot and measures the time simulated by
    each collect.
    """

    #: What clients are told the data is (``welcome``, ``/readyz``): simulated.
    kind: ClassVar[str] = "synthetic"

    def __init__(
        self,
        *,
        topics: int = 8,
        groups: int = 4,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if topics < 1:
            raise ValueError(f"topics must be >= 1, got {topics!r}")
        if groups < 0:
            raise ValueError(f"groups must be >= 0, got {groups!r}")
        self.target_topics = topics
        self.target_groups = groups
        self.seed = seed
        self._clock = clock
        self._rng = random.Random(seed)
        self._elapsed = 0.0
        self._last: float | None = None
        self._topic_serial = 0
        self._group_serial = 0
        self._topics: dict[str, SimTopic] = {}
        self._groups: dict[str, SimGroup] = {}
        self._producers = 2 * topics + 3.0
        for _ in range(topics):
            self._add_topic(initial=True)
        for _ in range(groups):
            self._add_group(initial=True)

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(topics={self.target_topics}, groups={self.target_groups}, "
            f"seed={self.seed})"
        )

    async def collect(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        return self.step()

    def step(self) -> Snapshot:
        """Advance the simulation to the clock's present and describe it."""
        now = self._clock()
        if self._last is None:
            logger.info(
                "metrics are SYNTHETIC (a simulated cluster: %d topics, %d groups, seed %d); "
                "to show a real Takhin broker use --source prometheus "
                "--prometheus-url http://BROKER:9090/metrics",
                self.target_topics,
                self.target_groups,
                self.seed,
            )
            dt = _FIRST_STEP
        else:
            dt = min(max(now - self._last, 0.0), _MAX_STEP)
        self._last = now
        self._advance(dt)
        return describe(
            self._topics.values(),
            self._groups.values(),
            producers=self._producers,
            dt=dt,
            timestamp=int(now),
        )

    # --- the cluster's shape ---

    def _add_topic(self, *, initial: bool = False) -> SimTopic:
        rng = self._rng
        name = _name(_TOPIC_WORDS, self._topic_serial)
        self._topic_serial += 1
        count = rng.choice(_PARTITION_CHOICES)
        raw_shares = [rng.uniform(0.6, 1.4) for _ in range(count)]
        total = sum(raw_shares)
        size = rng.choice(_MESSAGE_SIZES) * rng.uniform(0.7, 1.3)
        log_end = [rng.randint(10_000, 5_000_000) if initial else 0 for _ in range(count)]
        topic = SimTopic(
            name=name,
            log_end=log_end,
            disk=[min(n * size, _RETENTION_BYTES * 0.9) for n in log_end],
            shares=[s / total for s in raw_shares],
            carry=[0.0] * count,
            base_rate=10 ** rng.uniform(0.5, 3.3),
            message_size=size,
            period=rng.uniform(120.0, 900.0),
            phase=rng.uniform(0.0, 2 * math.pi),
        )
        self._topics[name] = topic
        return topic

    def _add_group(self, *, initial: bool = False) -> SimGroup:
        rng = self._rng
        group_id = _name(_GROUP_WORDS, self._group_serial)
        habit, habit_phase = habit_of(self._group_serial)
        self._group_serial += 1
        names = list(self._topics)
        chosen = rng.sample(names, k=min(len(names), rng.choice((1, 1, 2, 2, 3))))
        committed: dict[tuple[str, int], int] = {}
        for topic_name in chosen:
            topic = self._topics[topic_name]
            for partition, end in enumerate(topic.log_end):
                committed[(topic_name, partition)] = max(end - rng.randint(0, 2_000), 0)
        members = rng.randint(1, 4)
        group = SimGroup(
            group_id=group_id,
            topics=chosen,
            committed=committed,
            carry=dict.fromkeys(committed, 0.0),
            speed=rng.uniform(1.0, 1.3),
            period=rng.uniform(60.0, 300.0),
            phase=rng.uniform(0.0, 2 * math.pi),
            state="Stable" if initial else "PreparingRebalance",
            members=members if initial else 0,
            target_members=members,
            habit=habit,
            habit_phase=habit_phase,
        )
        self._groups[group_id] = group
        return group

    def _chance(self, mean_wait: float, dt: float) -> bool:
        """Whether an event with this mean waiting time happens within *dt*."""
        return self._rng.random() < 1.0 - math.exp(-dt / mean_wait)

    def _churn(self, dt: float) -> None:
        spread = max(1, self.target_topics // 10)
        if len(self._topics) < self.target_topics + spread and self._chance(_TOPIC_CHURN, dt):
            self._add_topic()
        if len(self._topics) > max(1, self.target_topics - spread) and self._chance(
            _TOPIC_CHURN, dt
        ):
            consumed = {name for group in self._groups.values() for name in group.topics}
            idle = [name for name in self._topics if name not in consumed]
            if idle:
                del self._topics[self._rng.choice(idle)]
        for group_id in [g.group_id for g in self._groups.values() if g.state == "Dead"]:
            del self._groups[group_id]
        if len(self._groups) < self.target_groups and self._chance(_GROUP_BORN, dt):
            self._add_group()

    def _lifecycle(self, group: SimGroup, dt: float) -> None:
        rng = self._rng
        if group.habit == "stops":  # its members come and go on its own cycle
            if stopped(group, self._elapsed):
                group.state, group.members = "Empty", 0
                return
            if group.state == "Empty":
                group.state = "PreparingRebalance"
                return
        if group.state == "PreparingRebalance":
            group.state = "CompletingRebalance"
        elif group.state == "CompletingRebalance":
            group.state = "Stable"
            group.members = group.target_members
        elif group.state == "Stable":
            if self._chance(_GROUP_EMPTIES, dt):
                group.state = "Empty"
                group.members = 0
            elif self._chance(_REBALANCE, dt):
                group.state = "PreparingRebalance"
                group.target_members = min(max(group.members + rng.choice((-1, 1)), 1), 8)
        elif group.state == "Empty":
            if self._chance(_GROUP_REJOINS, dt):
                group.state = "PreparingRebalance"
                group.target_members = rng.randint(1, 4)
            elif self._chance(_GROUP_DIES, dt):
                group.state = "Dead"

    # --- traffic ---

    def _advance(self, dt: float) -> None:
        rng = self._rng
        self._elapsed += dt
        self._churn(dt)
        for group in self._groups.values():
            self._lifecycle(group, dt)
        t = self._elapsed
        for topic in self._topics.values():
            load = 1.0 + 0.5 * math.sin(2 * math.pi * t / topic.period + topic.phase)
            topic.rate = topic.base_rate * load * rng.lognormvariate(0.0, 0.15)
            topic.fetched = 0.0
            for partition, share in enumerate(topic.shares):
                produced = topic.rate * share * dt + topic.carry[partition]
                whole = int(produced)
                topic.carry[partition] = produced - whole
                topic.log_end[partition] += whole
                disk = topic.disk[partition] + whole * topic.message_size
                topic.disk[partition] = disk if disk <= _RETENTION_BYTES else disk * 0.75
        for group in self._groups.values():
            if rewinds_now(group, t - dt, t):
                rewind(group, self._topics[group.topics[0]])
            if group.state != "Stable" or stalled(group, t):
                continue
            speed = group.speed * (
                1.0 + 0.6 * math.sin(2 * math.pi * t / group.period + group.phase)
            )
            for topic_name in group.topics:
                topic = self._topics[topic_name]
                for partition, share in enumerate(topic.shares):
                    key = (topic_name, partition)
                    # a consumer reads at least _MIN_READ_RATE a partition when it
                    # has a backlog (not at the pace of a quiet topic's producers)
                    pace = max(topic.rate * share, _MIN_READ_RATE)
                    capacity = pace * speed * dt + group.carry[key]
                    backlog = topic.log_end[partition] - group.committed[key]
                    consumed = min(int(capacity), backlog)
                    # unused capacity carries over, up to one message: a consumer that
                    # keeps up reads a message as it comes (a real one polls), instead
                    # of leaving one behind for several ticks
                    group.carry[key] = min(capacity - consumed, _CARRY_LIMIT)
                    group.committed[key] += consumed
                    topic.fetched += consumed
        self._producers = max(1.0, self._producers + rng.gauss(0.0, 0.5))
