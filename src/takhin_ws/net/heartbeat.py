"""One heartbeat sweep for every client: ping those due, drop those silent too long,
and tell token connections their token is expiring (then close them once it expired).

A task per client would cost memory per connection; one sweep does it for all. Each
transport keeps ``next_ping`` and ``last_receive`` (any byte from the peer counts,
a pong included); a token connection's core knows its expiry (so ``token_expiring``
and the 4001 close are late by at most one sweep period).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

import trio

from ..wire.websocket.frames import ping_frame

if TYPE_CHECKING:
    from ..config.settings import Settings
    from .session import Session

__all__ = ["PING_PAYLOAD", "heartbeat", "sweep_period"]

PING_PAYLOAD: Final = b"takhin-ws"
#: The sweep runs this many times per (shorter of) ping interval and timeout...
SWEEPS_PER_PERIOD: Final = 20
#: ...but never more often than every MIN_SWEEP s, nor less often than every MAX_SWEEP s.
MIN_SWEEP: Final = 0.05
MAX_SWEEP: Final = 2.0


def sweep_period(settings: Settings) -> float:
    """Seconds between two sweeps: a ping is late, a drop past the timeout, by at most this."""
    shortest = min(settings.ping_interval, settings.ping_timeout)
    return min(max(shortest / SWEEPS_PER_PERIOD, MIN_SWEEP), MAX_SWEEP)


async def heartbeat(sessions: Collection[Session], settings: Settings) -> None:
    """Sweep *sessions* (the server's live set: copied before each sweep) forever."""
    tick = sweep_period(settings)
    frame = ping_frame(PING_PAYLOAD)
    while True:
        await trio.sleep(tick)
        now = trio.current_time()
        wall = time.time()
        for session in tuple(sessions):
            transport = session.transport
            if transport.closing:
                continue
            if session.core.token is not None:
                session.check_expiry(wall)
            if now - transport.last_receive > settings.ping_timeout:
                transport.abort(f"heartbeat timeout: no pong within {settings.ping_timeout:g} s")
            elif now >= transport.next_ping:
                transport.next_ping = now + settings.ping_interval
                transport.send_control_nowait(frame)
