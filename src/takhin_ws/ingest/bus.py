"""The event bus: how a published message reaches the hub of every node.

The bus is the one publish path: the metrics producer's snapshots and every event of
the ingress go through ``EventBus.publish``, and nothing else publishes into a
server's hub. :class:`EventBus` is the interface; :class:`MemoryBus` (the default)
is one process: publishing is ``Hub.publish`` itself, immediate (``publish_nowait``),
or the same publish cut into steps that each hold the event loop briefly
(``publish``: a big snapshot's dicts built in pieces, its compression in a worker
thread, then ``Hub.commit``). A shared implementation (Redis Streams, see
``cluster.bus``) assigns offsets centrally and feeds every node's hub through
:meth:`Hub.deliver` from its ``run`` task, so all nodes see the same messages, in the
same order, with the same offsets.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final, Protocol, TypeVar

import trio
from attrs import frozen

from .._exceptions import TakhinWsError
from ..core.encoding import metrics_data_steps, release_steps
from ..core.hub import Hub
from ..wire.messages import MonitoringMetrics, Payload

T = TypeVar("T")

#: A publish with at least this many bytes to compress compresses them in a worker
#: thread, off the event loop (zlib lets go of the GIL while it works); less is
#: compressed in the fan-out, which costs less than the thread's round trip.
THREAD_MIN_SIZE: Final = 64 * 1024

__all__ = ["BusUnavailableError", "EventBus", "MemoryBus", "Published"]


class BusUnavailableError(TakhinWsError):
    """The bus did not take a message (its server is down, refuses writes, or did not
    answer in time).

    ``outcome_unknown`` is false when the message was certainly not published (the
    request never reached the server, or the server refused it), true when it may
    have been: the request was sent and no answer came (a timeout, a connection lost
    on the way), so the server may have appended it. ``published`` lists what a batch
    published before the failure (the messages after it were not)."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
        self.published: tuple[Published, ...] = ()


@frozen
class Published:
    """Where a message landed: its stream and offset, and the epoch of the offsets."""

    type: str
    channel: str
    offset: int
    epoch: str


class EventBus(Protocol):
    """Carries published messages to the hub of every node.

    - ``publish`` assigns the next offset of the message's stream and returns once
      the message is on the bus and the local hub has offered it to its clients
      (the same on every bus; a shared bus whose reader is cut off from its server
      waits a bounded time, then returns); raises :class:`BusUnavailableError` when
      it cannot publish, never loses silently.
    - ``publish_nowait`` is the synchronous form; buses that need I/O raise
      :class:`BusUnavailableError` from it (use ``publish``).
    - ``run`` delivers the bus's messages to the local hub until cancelled; it calls
      ``task_status.started()`` once the hub is in step with the bus.
    - ``healthy`` is false while the bus's server is unreachable or refuses writes;
      ``unavailable`` then says which, in a few words (``None`` while healthy).
    """

    @property
    def healthy(self) -> bool: ...

    @property
    def unavailable(self) -> str | None: ...

    def publish_nowait(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published: ...

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published: ...

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


class MemoryBus:
    """The single-process bus: the hub's own offsets, no I/O."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def healthy(self) -> bool:
        return True

    @property
    def unavailable(self) -> str | None:
        return None

    def publish_nowait(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        item = self.hub.publish(channel, payload, stale=stale)
        assert item.channel is not None
        assert item.offset is not None
        return Published(payload.TYPE, item.channel, item.offset, self.hub.epoch)

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        """:meth:`publish_nowait` in steps: a snapshot's ``data`` is built in pieces, a
        checkpoint between two, then its JSON, then its ``metrics:lean`` view, and a
        big message is compressed in a worker thread, before the hub commits it (the
        commit encodes it again if another publish took its offset meanwhile); the
        previous snapshot's dicts are let go of in pieces after."""
        data = None
        if isinstance(payload, MonitoringMetrics):
            data = await in_steps(metrics_data_steps(payload))
        else:
            await trio.lowlevel.checkpoint()
        prepared = self.hub.prepare(channel, payload, stale=stale, data=data)
        if data is not None:  # a snapshot: its view, its compression, each a step
            await trio.lowlevel.checkpoint()
            prepared.build_views()
            if prepared.compress_size() >= THREAD_MIN_SIZE:
                await trio.to_thread.run_sync(prepared.compress)
            else:
                await trio.lowlevel.checkpoint()
        item = self.hub.commit(prepared)
        await let_go(prepared.garbage)  # the previous snapshot's dicts
        assert item.channel is not None
        assert item.offset is not None
        return Published(payload.TYPE, item.channel, item.offset, self.hub.epoch)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


async def in_steps(steps: Generator[None, None, T]) -> T:
    """Run *steps* to its result, letting other tasks run before it and where it yields
    (each piece a step of its own, not the tail of the caller's)."""
    while True:
        await trio.lowlevel.checkpoint()
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


async def let_go(garbage: list[Any]) -> None:
    """Free what *garbage* holds in pieces (:func:`~takhin_ws.core.encoding.release_steps`),
    a step each; nothing, not even a checkpoint, when it holds nothing."""
    if garbage:
        await in_steps(release_steps(garbage))
