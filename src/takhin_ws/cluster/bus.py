"""The Redis Streams event bus: several nodes, one event stream (coredis, on Trio).

Every node publishes into Redis and every node's hub is fed from Redis, so all of
them send the same messages, in the same order, with the same offsets and epoch:

- One stream per offset stream (``takhin:stream:topics``, ``...:groups``,
  ``...:metrics``). The publish script (``lua/publish.lua``) assigns the next offset
  atomically (a counter in the hash ``takhin:state``) and appends the entry with the
  explicit id ``0-<offset>``, so stream ids *are* the offsets. Streams are capped with
  ``MAXLEN`` (approximate, at least the history size, for events; exact and short for
  metrics). What an entry holds is :mod:`.entries`' business.
- The epoch is a field of ``takhin:state``, created by whoever finds it missing,
  together with the counters: when Redis comes back empty, offsets restart at 1 under
  a new epoch, every node adopts it (:meth:`Hub.reset`, which tells live clients),
  and clients resuming from the old one are told ``recovered: false``.
- :meth:`RedisBus.run` loads the recent history into the hub (no fan-out), then runs
  one ``XREAD BLOCK`` loop on its own connection, calling :meth:`Hub.deliver`. While
  Redis is unreachable it retries with exponential backoff, logs once per streak,
  reports :attr:`~RedisBus.healthy` false, and resumes after the last id it delivered.
  It also probes whether Redis takes writes (:mod:`.writes`): a Redis at ``maxmemory``
  that refuses them makes the bus unhealthy too, until it takes one again.

Which node collects the metrics is not the bus's business: see :mod:`.lease`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import trio
from coredis.exceptions import RedisError

from .._exceptions import LocalProtocolError
from ..core.encoding import Prepared, complete, metrics_data_steps
from ..core.hub import Hub
from ..ingest.bus import THREAD_MIN_SIZE, BusUnavailableError, Published, in_steps, let_go
from ..wire.channels import STREAMS
from ..wire.messages import MonitoringMetrics, Payload
from .connection import DEFAULT_PREFIX, Keys, describe, open_client, where
from .entries import START_ID, EntryError, decode_entry_steps, encode_entry, entry_epoch, text
from .scripts import CURRENT_EPOCH, PUBLISH
from .writes import Writability, publish_error, refused

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["METRICS_STREAM_LENGTH", "MIN_STREAM_LENGTH", "READ_COUNT", "RedisBus"]

log: Final = logging.getLogger("takhin_ws.cluster")

#: Event streams keep at least this many entries, whatever the history size, so a
#: node that falls briefly behind still finds what it has not read yet.
MIN_STREAM_LENGTH: Final = 100
#: Metrics snapshots kept in Redis (only the latest one matters).
METRICS_STREAM_LENGTH: Final = 16
#: Entries one ``XREAD`` returns at most.
READ_COUNT: Final = 500


class _EpochChangedError(Exception):
    """Redis holds another epoch than the hub: it lost its state; resynchronize."""


class RedisBus:
    """An :class:`~takhin_ws.EventBus` shared by every node through Redis Streams.

    Construct it with the node's *hub* and a ``redis://host:port/db`` *url*; start
    :meth:`run` in a nursery (``await nursery.start(bus.run)``) before serving clients.
    ``run`` owns the Redis clients: they are open while it runs and closed when it
    ends. ``await publish`` works while ``run`` runs and Redis answers; otherwise it
    raises :class:`BusUnavailableError` (nothing was published). It returns, as on
    the in-memory bus, once this node's hub has the message (it came back through the
    reader), so what a caller publishes, its own clients have been offered. The
    synchronous ``publish_nowait`` cannot work here (the offset comes from Redis): it
    raises :class:`BusUnavailableError` and publishes nothing.

    *history_size* (default: the hub's) bounds each event stream (``MAXLEN ~``, at
    least :data:`MIN_STREAM_LENGTH`). *block* is the ``XREAD BLOCK`` time, *timeout*
    the deadline of one Redis call (publish, epoch check) beyond that, *backoff* the
    first and the longest pause between reconnection attempts.
    """

    def __init__(
        self,
        hub: Hub,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        history_size: int | None = None,
        block: float = 1.0,
        timeout: float = 5.0,
        backoff: tuple[float, float] = (0.1, 5.0),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not (block > 0 and timeout > 0):
            raise ValueError("block and timeout must be positive")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError("backoff must be (first, longest) with 0 < first <= longest")
        self.hub = hub
        self.url = url
        self.where = where(url)
        self.prefix = prefix
        self.history_size = hub.history_size if history_size is None else history_size
        self.block = block
        self.timeout = timeout
        self.backoff = backoff
        self._wall_clock = wall_clock
        keys = Keys(prefix)
        self.state_key = keys.state
        self.stream_keys = keys.streams
        self._stream_of_key = {k.encode(): s for s, k in self.stream_keys.items()}
        self._client = open_client(url, timeout=timeout)
        self._reader = open_client(url, timeout=timeout, blocking=True)
        self._publish_script = self._client.register_script(PUBLISH)
        self._epoch_script = self._client.register_script(CURRENT_EPOCH)
        self._last: dict[str, str] = dict.fromkeys(STREAMS, START_ID)
        self._progress = trio.Event()  # set (and replaced) whenever the reader moves on
        self._running = False
        self._open = False
        self._healthy = False
        self._writes = Writability(self._client, keys.write_probe, self.where, timeout)
        self._synced = False
        self.published = 0
        self.delivered = 0
        self.reconnects = 0

    @classmethod
    def for_settings(cls, settings: Settings, hub: Hub) -> RedisBus:
        """The server's bus for ``--redis-url``: streams sized by ``--history-size``."""
        if settings.redis_url is None:
            raise ValueError("settings.redis_url is not set")
        return cls(hub, settings.redis_url, history_size=settings.history_size)

    # --- state ---

    @property
    def healthy(self) -> bool:
        """True while the reader is in step with Redis and Redis takes writes."""
        return self._healthy and self._writes.refusal is None

    @property
    def unavailable(self) -> str | None:
        """Why the bus cannot carry messages now (``None`` while it can)."""
        if not self._healthy:
            return "Redis unreachable"
        if self._writes.refusal is not None:
            return f"Redis refuses writes: {self._writes.refusal}"
        return None

    def _maxlen(self, stream: str) -> tuple[str, int]:
        if stream == "metrics":
            return "=", METRICS_STREAM_LENGTH
        return "~", max(self.history_size, MIN_STREAM_LENGTH)

    def _all_keys(self) -> list[str]:
        return [self.state_key, *self.stream_keys.values()]

    # --- publishing ---

    def publish_nowait(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        """Always refused: Redis assigns the offset, so publishing takes a round trip.
        Raises :class:`BusUnavailableError`; nothing is published."""
        raise BusUnavailableError(
            "a Redis bus cannot publish without waiting for Redis: use await publish"
        )

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        """Append *payload* to its stream in Redis; return its offset and epoch.

        Every node's hub receives it from its reader; this one waits for its own
        (at most *timeout*, and not once the reader has lost Redis: the message is
        then published, and delivered when the reader is back). Raises
        :class:`BusUnavailableError` if Redis does not take it (down, refusing writes,
        timed out, or this bus is not running); its ``outcome_unknown`` is true when
        the request was sent and no answer came (Redis may have appended it).
        """
        data = None
        if isinstance(payload, MonitoringMetrics):  # big: its dicts in pieces
            data = await in_steps(metrics_data_steps(payload))
        stream, fields = encode_entry(
            channel, payload, timestamp=int(self._wall_clock()), stale=stale, data=data
        )
        if not self._open:
            raise BusUnavailableError("the Redis bus is not running")
        operator, maxlen = self._maxlen(stream)
        keys = [*self._all_keys(), self.stream_keys[stream]]
        args: list[str | bytes | int] = [secrets.token_hex(8), stream, operator, maxlen, *fields]
        try:
            with trio.fail_after(self.timeout):
                reply: Any = await self._publish_script(keys, args)
        except (RedisError, OSError, trio.TooSlowError) as exc:
            if refused(exc):
                self._writes.note(exc)
            raise publish_error(exc, self.where) from exc
        self._writes.note(None)
        offset, epoch = int(reply[0]), text(reply[1])
        self.published += 1
        await self._until_delivered(stream, offset, epoch)
        return Published(payload.TYPE, stream, offset, epoch)

    async def _until_delivered(self, stream: str, offset: int, epoch: str) -> None:
        """Wait (bounded) until this node's hub holds *offset* of *stream* in *epoch*."""
        hub = self.hub
        with trio.move_on_after(self.timeout):
            while self._healthy and not (hub.epoch == epoch and hub.offset(stream) >= offset):
                await self._progress.wait()
        await trio.lowlevel.checkpoint()

    def _moved_on(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    # --- the reader ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed the hub from Redis until cancelled.

        Reports started once the hub holds the recent history and the epoch of Redis,
        or, if Redis does not answer at the first attempt, at once (unhealthy, still
        retrying), so the node can answer ``/healthz`` and ``/readyz`` meanwhile.
        """
        if self._running:
            raise RuntimeError("this RedisBus is already running")
        self._running = True
        try:
            async with self._client, self._reader:
                self._open = True
                try:
                    await self._follow(task_status)
                finally:
                    self._open = False
                    self._healthy = False
                    self._moved_on()
        finally:
            self._running = False

    async def _follow(self, task_status: trio.TaskStatus[None]) -> None:
        started = False
        failures = 0
        down_since = 0.0
        delay = self.backoff[0]
        while True:
            try:
                await self._sync()
                if failures:
                    log.info(
                        "Redis at %s is reachable again after %.1f s (%d failed attempt%s); "
                        "reading the streams on from where this node left off",
                        self.where,
                        trio.current_time() - down_since,
                        failures,
                        "" if failures == 1 else "s",
                    )
                    self.reconnects += 1
                self._healthy = True
                failures = 0
                delay = self.backoff[0]
                if not started:
                    log.info(
                        "Redis at %s: this node shares the cluster's event streams (epoch %s)",
                        self.where,
                        self.hub.epoch,
                    )
                    started = True
                    task_status.started()
                while True:
                    await self._read_once()
                    self._moved_on()
            except _EpochChangedError:
                continue  # not a failure: _sync adopts the new epoch
            except Exception as exc:
                self._healthy = False
                self._moved_on()
                if failures == 0:
                    down_since = trio.current_time()
                    log.warning(
                        "Redis at %s is unavailable (%s): connected clients stay served, "
                        "publishing answers 503 and /readyz 503 until it is back; retrying "
                        "with backoff",
                        self.where,
                        describe(exc),
                        exc_info=None if isinstance(exc, RedisError | OSError) else exc,
                    )
                else:
                    log.debug("Redis at %s still unavailable: %s", self.where, describe(exc))
                failures += 1
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _current_epoch(self) -> str:
        with trio.fail_after(self.timeout):
            reply: Any = await self._epoch_script(self._all_keys(), [secrets.token_hex(8)])
        return text(reply)

    async def _sync(self) -> None:
        """Adopt Redis's epoch; on the first sync (or a new epoch) start the streams over.

        First sync: load each stream's recent entries into the hub without fan-out,
        then read after them. New epoch (Redis lost its state): reset the hub and read
        the new epoch's streams from their start, delivering them to the clients.
        Same epoch after an outage: nothing to do, reading goes on after the last id.
        """
        epoch = await self._current_epoch()
        if self._synced and epoch == self.hub.epoch:
            return
        if self._synced:
            log.warning(
                "Redis at %s lost the event streams (new epoch %s, was %s): offsets start "
                "again at 1; clients resuming from the old epoch will be told to refetch",
                self.where,
                epoch,
                self.hub.epoch,
            )
            self.hub.reset(epoch)
            self._last = dict.fromkeys(STREAMS, START_ID)
            return
        self.hub.reset(epoch)
        last = dict.fromkeys(STREAMS, START_ID)
        for stream, key in self.stream_keys.items():
            keep = 1 if stream == "metrics" else max(self.hub.history_size, 1)
            with trio.fail_after(self.timeout):
                entries = await self._client.xrevrange(key, count=keep)
            for entry in reversed(entries):
                item = await self._item(stream, entry)
                if item is not None:
                    self.hub.remember(stream, item.item)
                last[stream] = text(entry.identifier)
        self._last = last
        self._synced = True

    async def _read_once(self) -> None:
        await self._writes.probe()
        block_ms = max(1, int(self.block * 1000))
        streams = {self.stream_keys[s]: self._last[s] for s in STREAMS}
        with trio.fail_after(self.block + self.timeout):
            reply = await self._reader.xread(streams, count=READ_COUNT, block=block_ms)
        if not reply:
            # Idle: make sure Redis still holds our epoch (a FLUSHALL without a restart
            # would otherwise go unnoticed until offsets caught up).
            if await self._current_epoch() != self.hub.epoch:
                raise _EpochChangedError
            return
        for key, entries in reply.items():
            stream = self._stream_of_key[key if isinstance(key, bytes) else key.encode()]
            for entry in entries:
                other = entry_epoch(entry.field_values) != self.hub.epoch
                if other and await self._current_epoch() != self.hub.epoch:
                    raise _EpochChangedError
                item = await self._item(stream, entry)
                if item is not None:
                    if item.compress_size() >= THREAD_MIN_SIZE:
                        await trio.to_thread.run_sync(item.compress)
                    self.hub.deliver(item.channel, item)
                    self.delivered += 1
                    await let_go(item.garbage)
                self._last[stream] = text(entry.identifier)

    async def _item(self, stream: str, entry: Any) -> Prepared | None:
        """The hub item of one stream entry, decoded in steps and prepared (its views
        built); None (logged) for an entry we cannot use, or once the hub is closed."""
        steps = decode_entry_steps(stream, entry.identifier, entry.field_values, self.hub.epoch)
        try:
            # a snapshot in steps; an event (small) in one go, no checkpoint per entry
            got = await in_steps(steps) if stream == "metrics" else complete(steps)
            if self.hub.closed:  # shutting down: nobody to deliver to
                return None
            item = got.prepare(self.hub)
        except (EntryError, LocalProtocolError) as exc:  # unreadable, or not encodable
            ident = text(entry.identifier)
            log.error("skipping entry %s of %s: %s", ident, stream, exc)
            return None
        if got.data is not None:
            await trio.lowlevel.checkpoint()
            item.build_views()
        return item
