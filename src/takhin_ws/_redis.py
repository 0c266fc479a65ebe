"""The Redis Streams bus: several nodes, one event stream (coredis, natively on Trio).

Every node publishes into Redis and every node's hub is fed from Redis, so all of
them send the same messages, in the same order, with the same offsets and epoch:

- One stream per offset stream (``takhin:stream:topics``, ``...:groups``,
  ``...:metrics``). A Lua script assigns the next offset atomically (a counter in the
  hash ``takhin:state``) and appends the entry with the explicit id ``0-<offset>``, so
  stream ids *are* the offsets. Streams are capped with ``MAXLEN`` (approximate, at
  least the history size, for events; exact and short for metrics).
- An entry holds what every node needs to encode a byte-identical envelope: the
  message without its offset fields (``msg``: type, data, timestamp, stale), the
  channel it was published on (``route``) and the ``epoch``.
- The epoch is a field of ``takhin:state``, created by whoever finds it missing,
  together with the counters: when Redis comes back empty, offsets restart at 1 under
  a new epoch, every node adopts it, and clients resuming from the old one are told
  ``recovered: false``.
- :meth:`RedisBus.run` loads the recent history into the hub (no fan-out), then runs
  one ``XREAD BLOCK`` loop on its own connection, calling :meth:`Hub.deliver`. While
  Redis is unreachable it retries with exponential backoff, logs once per streak,
  reports :attr:`~RedisBus.healthy` false, and resumes after the last id it delivered.
- Metrics in cluster mode: :meth:`RedisBus.hold_metrics_lease` is the producer's
  ``should_collect`` hook; one node at a time holds ``takhin:metrics-lease``.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import coredis
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from ._bus import BusUnavailableError, Published
from ._channels import STREAMS, parse_channel, stream_of
from ._codec import decode, encode
from ._config import Settings
from ._exceptions import LocalProtocolError, RemoteProtocolError
from ._frames import Outbound
from ._hub import Hub
from ._ingress import EventIngress
from ._messages import (
    Envelope,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    MonitoringMetrics,
    Payload,
    TopicCreated,
    TopicDeleted,
)

__all__ = ["DEFAULT_PREFIX", "METRICS_STREAM_LENGTH", "MIN_STREAM_LENGTH", "RedisBus"]

log: Final = logging.getLogger("takhin_ws.redis")

DEFAULT_PREFIX: Final = "takhin"
#: Event streams keep at least this many entries, whatever the history size, so a
#: node that falls briefly behind still finds what it has not read yet.
MIN_STREAM_LENGTH: Final = 100
#: Metrics snapshots kept in Redis (only the latest one matters).
METRICS_STREAM_LENGTH: Final = 16

# Creates the epoch (and forgets streams of an older one) when the state is missing.
_ENSURE_EPOCH: Final = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
"""

# KEYS: state hash, every stream key; ARGV: new epoch candidate.
_EPOCH_SCRIPT: Final = _ENSURE_EPOCH + "return epoch\n"

# KEYS: state hash, every stream key, then the stream to append to (again).
# ARGV: new epoch candidate, counter field, MAXLEN operator, MAXLEN, field/value pairs.
_PUBLISH_SCRIPT: Final = (
    _ENSURE_EPOCH
    + """
local target = KEYS[#KEYS]
local offset = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('XADD', target, 'MAXLEN', ARGV[3], ARGV[4], '0-' .. offset,
           'epoch', epoch, unpack(ARGV, 5))
return {offset, epoch}
"""
)

# KEYS: lease; ARGV: node id, ttl in ms. Take the lease if free, renew it if ours.
_LEASE_SCRIPT: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _closing_buffers(connection_class: type[Any]) -> type[Any]:
    """*connection_class*, closing its in-memory buffers however its ``run`` ends.

    A coredis connection creates them when constructed but closes them only once
    connected, so every failed or cancelled connect (Redis down, shutdown) would leave
    them to the garbage collector with a ``ResourceWarning``.
    """

    class Closing(connection_class):  # type: ignore[misc]
        async def run(self, **kwargs: Any) -> None:
            try:
                await super().run(**kwargs)
            finally:
                for value in list(vars(self).values()):
                    if isinstance(value, MemoryObjectSendStream | MemoryObjectReceiveStream):
                        value.close()

    Closing.__name__ = Closing.__qualname__ = f"Closing{connection_class.__name__}"
    return Closing


def _client(url: str, **options: Any) -> coredis.Redis[bytes]:
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = _closing_buffers(pool.connection_class)
    return client


class _EpochChangedError(Exception):
    """Redis holds another epoch than the hub: it lost its state; resynchronize."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _where(url: str) -> str:
    """``host:port/db`` of *url*, without credentials (for logs)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 6379}{parts.path or ''}"


class RedisBus:
    """An :class:`~takhin_ws.EventBus` shared by every node through Redis Streams.

    Construct it with the node's *hub* and a ``redis://host:port/db`` *url*; start
    :meth:`run` in a nursery (``await nursery.start(bus.run)``) before serving clients.
    ``run`` owns the Redis clients: they are open while it runs and closed when it
    ends. ``publish`` works while ``run`` runs and Redis answers; otherwise it raises
    :class:`BusUnavailableError` (nothing was published).

    *history_size* (default: the hub's) bounds each event stream (``MAXLEN ~``, at
    least :data:`MIN_STREAM_LENGTH`). *block* is the ``XREAD BLOCK`` time, *timeout*
    the deadline of one Redis call (publish, lease) beyond that, *backoff* the first
    and the longest pause between reconnection attempts. *lease_ttl* is how long the
    metrics lease outlives its last renewal.
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
        lease_ttl: float = 6.0,
        node_id: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not (block > 0 and timeout > 0 and lease_ttl > 0):
            raise ValueError("block, timeout and lease_ttl must be positive")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError("backoff must be (first, longest) with 0 < first <= longest")
        self.hub = hub
        self.url = url
        self.where = _where(url)
        self.prefix = prefix
        self.history_size = hub.history_size if history_size is None else history_size
        self.block = block
        self.timeout = timeout
        self.backoff = backoff
        self.lease_ttl = lease_ttl
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wall_clock = wall_clock
        self.state_key = f"{prefix}:state"
        self.lease_key = f"{prefix}:metrics-lease"
        self.stream_keys: Mapping[str, str] = {s: f"{prefix}:stream:{s}" for s in STREAMS}
        self._stream_of_key = {k.encode(): s for s, k in self.stream_keys.items()}
        # This bus reports Redis's availability itself (once per outage); coredis's
        # own info lines (each lost connection, each first EVALSHA) would repeat it.
        coredis_log = logging.getLogger("coredis")
        if coredis_log.level == logging.NOTSET:
            coredis_log.setLevel(logging.WARNING)
        options: dict[str, Any] = {
            "retry_policy": NoRetryPolicy(),  # a lost reply must not publish twice
            "connect_timeout": min(timeout, 2.0),
            "stream_timeout": timeout,
        }
        self._client = _client(url, **options)
        options["stream_timeout"] = None  # XREAD BLOCK: bounded by our own deadline
        self._reader = _client(url, **options)
        self._publish_script = self._client.register_script(_PUBLISH_SCRIPT)
        self._epoch_script = self._client.register_script(_EPOCH_SCRIPT)
        self._lease_script = self._client.register_script(_LEASE_SCRIPT)
        self._release_script = self._client.register_script(_RELEASE_SCRIPT)
        self._last: dict[str, str] = dict.fromkeys(STREAMS, "0-0")
        self._running = False
        self._open = False
        self._healthy = False
        self._synced = False
        self._holds_lease = False
        self.published = 0
        self.delivered = 0
        self.reconnects = 0

    @classmethod
    def for_settings(cls, settings: Settings, hub: Hub) -> RedisBus:
        """The server's bus for ``--redis-url``: streams sized by ``--history-size``; the
        metrics lease outlives three ticks (at least 1 s) without renewal."""
        if settings.redis_url is None:
            raise ValueError("settings.redis_url is not set")
        tick = max(settings.interval, settings.collect_timeout or settings.interval)
        return cls(
            hub,
            settings.redis_url,
            history_size=settings.history_size,
            lease_ttl=max(3 * tick, 1.0),
        )

    # --- state ---

    @property
    def healthy(self) -> bool:
        """True while the reader is in step with Redis (false while it is unreachable)."""
        return self._healthy

    @property
    def holds_lease(self) -> bool:
        """Whether this node held the metrics lease at its last attempt."""
        return self._holds_lease

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
        raise BusUnavailableError("use await publish with a Redis bus")

    async def publish(
        self, channel: str, payload: Payload, *, stale: bool | None = None
    ) -> Published:
        """Append *payload* to its stream in Redis; return its offset and epoch.

        Every node's hub (this one included) receives it from its reader. Raises
        :class:`BusUnavailableError` if Redis does not take it (down, timed out, or
        this bus is not running); the message may then still have been appended if
        Redis received it just before the connection failed.
        """
        route = parse_channel(channel)
        stream = stream_of(route)
        envelope = Envelope(payload=payload, timestamp=int(self._wall_clock()), stale=stale)
        message = encode(envelope)
        if not self._open:
            raise BusUnavailableError("the Redis bus is not running")
        operator, maxlen = self._maxlen(stream)
        keys = [*self._all_keys(), self.stream_keys[stream]]
        args: list[str | bytes | int] = [secrets.token_hex(8), stream, operator, maxlen]
        args += ["route", route, "msg", message]
        try:
            with trio.fail_after(self.timeout):
                reply: Any = await self._publish_script(keys, args)
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise BusUnavailableError(f"Redis at {self.where}: {_reason(exc)}") from exc
        offset, epoch = int(reply[0]), _text(reply[1])
        self.published += 1
        return Published(payload.TYPE, stream, offset, epoch)

    # --- metrics lease ---

    async def hold_metrics_lease(self) -> bool:
        """Take the metrics lease if free, or renew it if this node holds it; True when
        this node holds it now. False when another node does or Redis is unreachable.
        (The ``should_collect`` hook of :class:`~takhin_ws.MetricsProducer`.)"""
        held = False
        if self._open:
            ttl_ms = max(1, math.ceil(self.lease_ttl * 1000))
            try:
                with trio.fail_after(self.timeout):
                    held = bool(await self._lease_script([self.lease_key], [self.node_id, ttl_ms]))
            except (RedisError, OSError, trio.TooSlowError) as exc:
                log.debug("metrics lease: Redis at %s: %s", self.where, _reason(exc))
        if held != self._holds_lease:
            if held:
                log.info("this node (%s) now collects the metrics (lease taken)", self.node_id)
            else:
                log.info("this node (%s) no longer collects the metrics", self.node_id)
        self._holds_lease = held
        return held

    def metrics_publisher(
        self, ingress: EventIngress
    ) -> Callable[[Payload, bool | None], Awaitable[Published]]:
        """The producer's ``publish`` hook: snapshots go on the ``metrics`` stream,
        change events through *ingress* (validated and counted, then this bus)."""

        async def publish(payload: Payload, stale: bool | None) -> Published:
            if isinstance(payload, MonitoringMetrics):
                return await self.publish("metrics", payload, stale=bool(stale))
            if isinstance(
                payload, TopicCreated | TopicDeleted | GroupCreated | GroupUpdated | GroupDeleted
            ):
                return await ingress.publish(payload)
            raise TypeError(f"{payload.TYPE} is neither a snapshot nor an event")

        return publish

    async def release_metrics_lease(self) -> None:
        """Give the lease up (if held) so another node takes over at once. Never raises."""
        if not (self._open and self._holds_lease):
            return
        self._holds_lease = False
        try:
            with trio.move_on_after(min(self.timeout, 1.0)):
                await self._release_script([self.lease_key], [self.node_id])
        except (RedisError, OSError) as exc:
            log.debug("could not release the metrics lease: %s", _reason(exc))

    async def aclose(self) -> None:
        """Prepare to stop: release the metrics lease. (``run``'s end closes the clients.)"""
        await self.release_metrics_lease()

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
                    self._holds_lease = False
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
                    started = True
                    task_status.started()
                while True:
                    await self._read_once()
            except _EpochChangedError:
                continue  # not a failure: _sync adopts the new epoch
            except Exception as exc:
                self._healthy = False
                if failures == 0:
                    down_since = trio.current_time()
                    log.warning(
                        "Redis at %s is unavailable (%s): connected clients stay served, "
                        "publishing answers 503 and /readyz 503 until it is back; retrying "
                        "with backoff",
                        self.where,
                        _reason(exc),
                        exc_info=None if isinstance(exc, RedisError | OSError) else exc,
                    )
                else:
                    log.debug("Redis at %s still unavailable: %s", self.where, _reason(exc))
                failures += 1
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _current_epoch(self) -> str:
        with trio.fail_after(self.timeout):
            reply: Any = await self._epoch_script(self._all_keys(), [secrets.token_hex(8)])
        return _text(reply)

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
            self._last = dict.fromkeys(STREAMS, "0-0")
            return
        self.hub.reset(epoch)
        last = dict.fromkeys(STREAMS, "0-0")
        for stream, key in self.stream_keys.items():
            keep = 1 if stream == "metrics" else max(self.hub.history_size, 1)
            with trio.fail_after(self.timeout):
                entries = await self._client.xrevrange(key, count=keep)
            for entry in reversed(entries):
                parsed = self._parse(stream, entry)
                if parsed is not None:
                    self.hub.remember(*parsed)
                last[stream] = _text(entry.identifier)
        self._last = last
        self._synced = True

    async def _read_once(self) -> None:
        block_ms = max(1, int(self.block * 1000))
        streams = {self.stream_keys[s]: self._last[s] for s in STREAMS}
        with trio.fail_after(self.block + self.timeout):
            reply = await self._reader.xread(streams, count=500, block=block_ms)
        if not reply:
            # Idle: make sure Redis still holds our epoch (a FLUSHALL without a restart
            # would otherwise go unnoticed until offsets caught up).
            if await self._current_epoch() != self.hub.epoch:
                raise _EpochChangedError
            return
        for key, entries in reply.items():
            stream = self._stream_of_key[key if isinstance(key, bytes) else key.encode()]
            for entry in entries:
                other = _text(entry.field_values.get(b"epoch", b"")) != self.hub.epoch
                if other and await self._current_epoch() != self.hub.epoch:
                    raise _EpochChangedError
                parsed = self._parse(stream, entry)
                if parsed is not None:
                    self.hub.deliver(*parsed)
                    self.delivered += 1
                self._last[stream] = _text(entry.identifier)

    def _parse(self, stream: str, entry: Any) -> tuple[str, Outbound] | None:
        """The hub item of one stream entry; None (logged) for an entry we cannot use."""
        ident = _text(entry.identifier)
        fields = {_text(k): v for k, v in entry.field_values.items()}
        epoch = _text(fields.get("epoch", b""))
        if epoch != self.hub.epoch:
            log.error("skipping entry %s of %s from another epoch (%s)", ident, stream, epoch)
            return None
        try:
            route = parse_channel(_text(fields["route"]))
            if stream_of(route) != stream:
                raise ValueError(f"route {route!r} is not a channel of {stream}")
            offset = int(ident.partition("-")[2])
            envelope = decode(fields["msg"])
            envelope = attrs.evolve(envelope, channel=stream, offset=offset, epoch=epoch)
            payload = encode(envelope)
        except (KeyError, ValueError, RemoteProtocolError, LocalProtocolError) as exc:
            log.error("skipping unreadable entry %s of %s: %s", ident, stream, exc)
            return None
        return route, Outbound.of(payload, stream, offset, route)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause):
        text = f"{text} ({cause})" if text else str(cause)
    return text or type(exc).__name__
