"""Redis clients for the cluster (coredis, natively on Trio), and how to name failures.

:func:`open_client` builds a coredis client that never retries on its own (a lost
reply must not publish twice) and leaves no unclosed buffer behind a failed or
cancelled connect. :class:`Keys` names every key of one takhin-ws cluster.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import coredis
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import frozen
from coredis.retry import NoRetryPolicy

from ..wire.channels import STREAMS

__all__ = [
    "DEFAULT_PREFIX",
    "Keys",
    "describe",
    "new_node_id",
    "open_client",
    "quiet_coredis",
    "where",
]

DEFAULT_PREFIX: Final = "takhin"
#: The longest wait for a TCP connection to Redis, whatever the call deadline.
CONNECT_TIMEOUT: Final = 2.0
DEFAULT_REDIS_PORT: Final = 6379


@frozen
class Keys:
    """The keys of the cluster under *prefix*: ``<prefix>:state`` (epoch and offset
    counters), ``<prefix>:stream:<stream>``, ``<prefix>:metrics-lease`` and
    ``<prefix>:write-probe``."""

    prefix: str = DEFAULT_PREFIX

    @property
    def state(self) -> str:
        return f"{self.prefix}:state"

    @property
    def lease(self) -> str:
        return f"{self.prefix}:metrics-lease"

    @property
    def write_probe(self) -> str:
        """A key the buses write now and then to learn whether Redis takes writes."""
        return f"{self.prefix}:write-probe"

    @property
    def streams(self) -> Mapping[str, str]:
        return {s: f"{self.prefix}:stream:{s}" for s in STREAMS}


def new_node_id() -> str:
    """``host:pid:random``: names this process in the lease (and in logs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


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


def quiet_coredis() -> None:
    """The cluster reports Redis's availability itself (once per outage); coredis's
    own info lines (each lost connection, each first EVALSHA) would repeat it."""
    coredis_log = logging.getLogger("coredis")
    if coredis_log.level == logging.NOTSET:
        coredis_log.setLevel(logging.WARNING)


def open_client(url: str, *, timeout: float, blocking: bool = False) -> coredis.Redis[bytes]:
    """A client for *url*; each call is bounded by *timeout*, or, for a *blocking*
    client (``XREAD BLOCK``), by the caller's own deadline. Enter it (``async with``)
    to use it."""
    quiet_coredis()
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url,
        retry_policy=NoRetryPolicy(),  # a lost reply must not publish twice
        connect_timeout=min(timeout, CONNECT_TIMEOUT),
        stream_timeout=None if blocking else timeout,
    )
    pool = client.connection_pool
    pool.connection_class = _closing_buffers(pool.connection_class)
    return client


def where(url: str) -> str:
    """``host:port/db`` of *url*, without credentials (for logs)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or DEFAULT_REDIS_PORT}{parts.path or ''}"


def describe(exc: BaseException) -> str:
    """One line saying why a Redis call failed."""
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause):
        text = f"{text} ({cause})" if text else str(cause)
    return text or type(exc).__name__
