"""Every tunable of the service, with its default, in one frozen object."""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs
from attrs import frozen

from ._hub import DEFAULT_HISTORY_SIZE, DEFAULT_MAX_CLIENTS
from ._queue import DEFAULT_QUEUE_SIZE
from ._transport import DEFAULT_WRITE_TIMEOUT

__all__ = ["Settings"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080
DEFAULT_INTERVAL: Final = 2.0
#: WebSocket ping cadence and the silence after which a peer counts as dead (2.9: 54/60 s).
DEFAULT_PING_INTERVAL: Final = 54.0
DEFAULT_PING_TIMEOUT: Final = 60.0
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: Kernel send buffer per client (SO_SNDBUF; 0 = the system's default, which on
#: loopback lets a stalled peer hold megabytes before the queue and ``gap`` engage).
DEFAULT_SEND_BUFFER_SIZE: Final = 256 * 1024
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
#: More than this many invalid messages within the window closes the connection (1008).
DEFAULT_BAD_MESSAGE_LIMIT: Final = 10
DEFAULT_BAD_MESSAGE_WINDOW: Final = 10.0
DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024
DEFAULT_UNREADY_AFTER: Final = 3
#: Seconds a refused client is asked to wait (``Retry-After``) when the hub is full.
DEFAULT_RETRY_AFTER: Final = 5

Source = Literal["synthetic", "prometheus"]
LogFormat = Literal["text", "json"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name.replace('_', '-')} must be > 0, got {value}")


@frozen(kw_only=True)
class Settings:
    """Configuration of one takhin-ws server (the CLI flags, as a value)."""

    host: str = DEFAULT_HOST
    port: int = attrs.field(default=DEFAULT_PORT)
    interval: float = attrs.field(default=DEFAULT_INTERVAL, validator=_positive)
    source: Source = "synthetic"
    prometheus_url: str | None = None
    synthetic_topics: int = 8
    synthetic_groups: int = 4
    synthetic_seed: int = 0
    collect_timeout: float | None = None
    unready_after: int = DEFAULT_UNREADY_AFTER
    max_clients: int = DEFAULT_MAX_CLIENTS
    queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, validator=_positive)
    history_size: int = DEFAULT_HISTORY_SIZE
    history_ttl: float | None = None
    api_keys: tuple[str, ...] = ()
    publish_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    ping_interval: float = attrs.field(default=DEFAULT_PING_INTERVAL, validator=_positive)
    ping_timeout: float = attrs.field(default=DEFAULT_PING_TIMEOUT, validator=_positive)
    write_timeout: float = attrs.field(default=DEFAULT_WRITE_TIMEOUT, validator=_positive)
    handshake_timeout: float = attrs.field(default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_positive)
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_message_size: int = attrs.field(default=DEFAULT_MAX_MESSAGE_SIZE, validator=_positive)
    max_body_size: int = attrs.field(default=DEFAULT_MAX_BODY_SIZE, validator=_positive)
    send_buffer_size: int = DEFAULT_SEND_BUFFER_SIZE
    bad_message_limit: int = DEFAULT_BAD_MESSAGE_LIMIT
    bad_message_window: float = attrs.field(default=DEFAULT_BAD_MESSAGE_WINDOW, validator=_positive)
    retry_after: int = DEFAULT_RETRY_AFTER
    redis_url: str | None = None
    log_level: str = "info"
    log_format: LogFormat = "text"

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.source == "prometheus" and not self.prometheus_url:
            raise ValueError("--source prometheus needs --prometheus-url")
        if self.send_buffer_size < 0:
            raise ValueError(f"send-buffer-size must be >= 0, got {self.send_buffer_size}")
        if self.max_clients < 0 or self.history_size < 0:
            raise ValueError("max-clients and history-size must be >= 0")
