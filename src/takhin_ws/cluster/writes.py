"""Whether Redis takes writes, and what a failed publish means for its message.

Redis may be reachable and still refuse every write: at ``maxmemory`` with the
``noeviction`` policy (``OOM command not allowed...``), on a read-only replica, after a
failed snapshot with ``stop-writes-on-bgsave-error``. The reader cannot see that (it
only reads), so it probes: every :data:`WRITE_PROBE_INTERVAL` seconds one small ``SET``
with a short expiry; a refusal (and a publish refused the same way) makes the bus
unhealthy, with Redis's own words, until a probe or a publish goes through again.

A failed publish is one of two things for its message:

- **not published**: Redis answered with an error (the publish script appends last,
  so an error means nothing was appended), or the connection could not be made (the
  request never left);
- **outcome unknown**: the request was sent and no answer came (a timeout, a
  connection lost on the way): Redis may have appended it, and a retry may publish
  it twice.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final

import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import RedisError, ResponseError

from ..ingest.bus import BusUnavailableError
from .connection import describe

if TYPE_CHECKING:
    import coredis

__all__ = [
    "PROBE_TTL_MS",
    "WRITE_PROBE_INTERVAL",
    "Writability",
    "never_sent",
    "publish_error",
    "refused",
]

log: Final = logging.getLogger("takhin_ws.cluster")

#: Seconds between two write probes of a bus's reader.
WRITE_PROBE_INTERVAL: Final = 1.0
#: Lifetime of the probe key (ms): it never outlives a few probes.
PROBE_TTL_MS: Final = 10_000


def refused(exc: BaseException) -> bool:
    """Redis answered the request with an error: it did not do it."""
    return isinstance(exc, ResponseError)


def never_sent(exc: BaseException) -> bool:
    """No connection could be made, so the request never left (coredis wraps the
    connect failure, an ``OSError``, in its ``ConnectionError``; a connection lost
    with a request on it fails that request otherwise)."""
    return isinstance(exc, RedisConnectionError) and isinstance(exc.__cause__, OSError)


def publish_error(exc: BaseException, where: str) -> BusUnavailableError:
    """The :class:`BusUnavailableError` of a publish that failed with *exc*."""
    known = refused(exc) or never_sent(exc)
    return BusUnavailableError(f"Redis at {where}: {describe(exc)}", outcome_unknown=not known)


class Writability:
    """Whether Redis takes writes, as the last probe or publish of one bus found."""

    def __init__(self, client: coredis.Redis[bytes], key: str, where: str, timeout: float) -> None:
        self._client = client
        self._key = key
        self._where = where
        self._timeout = timeout
        #: Redis's own words while it refuses writes (``None`` while it takes them)
        self.refusal: str | None = None
        self._next_probe = -math.inf

    def note(self, exc: BaseException | None) -> None:
        """Redis refused a write with *exc*, or (``None``) took one."""
        if exc is not None and self.refusal is None:
            log.warning(
                "Redis at %s refuses writes (%s): publishing answers 503 and /readyz 503 "
                "until it takes them again",
                self._where,
                describe(exc),
            )
        elif exc is None and self.refusal is not None:
            log.info("Redis at %s takes writes again", self._where)
        self.refusal = None if exc is None else describe(exc)

    async def probe(self) -> None:
        """One small write (a key that expires), at most every WRITE_PROBE_INTERVAL
        seconds. A refusal is noted; any other failure is raised (the caller's, as
        for every Redis call: Redis is unreachable)."""
        now = trio.current_time()
        if now < self._next_probe:
            return
        self._next_probe = now + WRITE_PROBE_INTERVAL
        try:
            with trio.fail_after(self._timeout):
                await self._client.set(self._key, self._where, px=PROBE_TTL_MS)
        except RedisError as exc:
            if not refused(exc):
                raise
            self.note(exc)
            return
        self.note(None)
