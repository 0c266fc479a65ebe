"""What a metrics source produces, and the protocol it implements (a leaf module).

A :class:`MetricsSource` answers :meth:`~MetricsSource.collect` with a
:class:`Snapshot`: the ``metrics`` message plus the consumer groups' state and member
count, which the 2.9 message does not carry but change events need. Sources live in
:mod:`takhin_ws.sources`; the producer (:mod:`takhin_ws.ingest.producer`) asks one per tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

import attrs
from attrs import frozen

from ..._exceptions import TakhinWsError
from ...wire.messages import GroupState, MonitoringMetrics

__all__ = [
    "GroupInfo",
    "MetricsSource",
    "MetricsSourceError",
    "MetricsSourceIncompatibleError",
    "Snapshot",
]


class MetricsSourceError(TakhinWsError):
    """A source could not produce a snapshot (unreachable broker, bad answer...).

    Sources raise it with a message that says what went wrong and where; the producer
    logs that message and carries on with the last good snapshot.
    """


class MetricsSourceIncompatibleError(MetricsSourceError):
    """The source reached the cluster, which does not speak its protocol as the source
    does (it closes the connection at the handshake, answers what cannot be read, or
    lacks a request the source needs): waiting will not help. ``/readyz`` says
    "incompatible" rather than "failed"."""


@frozen(kw_only=True)
class GroupInfo:
    """What a change event says about a consumer group besides its id."""

    state: GroupState
    members: int


def _frozen_groups(groups: Mapping[str, GroupInfo]) -> Mapping[str, GroupInfo]:
    return MappingProxyType(dict(groups))


@frozen(kw_only=True)
class Snapshot:
    """One observation of the cluster: what :meth:`MetricsSource.collect` returns.

    ``metrics`` is published as is; ``groups`` (every consumer group the source knows,
    by id, including groups without lag) feeds the ``group_*`` change events.
    """

    metrics: MonitoringMetrics
    groups: Mapping[str, GroupInfo] = attrs.field(
        factory=dict, converter=_frozen_groups, repr=lambda g: f"<{len(g)} groups>"
    )


class MetricsSource(Protocol):
    """Where snapshots come from. Plug your own into :class:`MetricsProducer`.

    ``collect`` is called once per tick, never concurrently with itself, inside a
    deadline (``collect_timeout``): it may be cancelled at any await. It returns a
    fresh :class:`Snapshot` or raises an :class:`Exception` (preferably
    :class:`MetricsSourceError` with a clear message); it must not swallow
    cancellation. Rates are the source's business: it is told nothing about the
    producer's interval, so it measures the time between its own collects.

    A source may also name its kind with a string attribute ``kind`` (the built-in
    ones do: ``synthetic``, ``prometheus``, ``kafka``, ``kafka+prometheus``); clients
    see it in ``welcome`` and ``/readyz``, and ``synthetic`` marks the data as
    simulated. A source without one is ``custom``.
    """

    async def collect(self) -> Snapshot: ...
