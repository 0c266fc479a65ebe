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
#: Channels one connection may be subscribed to at once (``too_many_channels`` beyond).
DEFAULT_MAX_CHANNELS: Final = 256
#: Client commands per second one connection may sustain, after a burst of
#: ``DEFAULT_COMMAND_BURST``; a faster sender is throttled (its messages wait).
DEFAULT_COMMAND_RATE: Final = 50.0
DEFAULT_COMMAND_BURST: Final = 100
#: Seconds an HTTP request body may take to arrive (408 after).
DEFAULT_BODY_TIMEOUT: Final = 10.0
#: Largest Prometheus exposition accepted (a 3,000-topic broker serves ~23 MiB).
DEFAULT_SCRAPE_MAX_BYTES: Final = 64 * 1024 * 1024
#: Frames shorter than this are sent uncompressed even to clients that negotiated
#: permessage-deflate (deflate gains nothing on a pong-sized message).
DEFAULT_COMPRESS_MIN_SIZE: Final = 512
#: Seconds of chart series (throughput, latency, lag per group) kept for a reloaded page.
DEFAULT_SERIES_WINDOW: Final = 900.0

Source = Literal["synthetic", "prometheus", "kafka"]
LogFormat = Literal["text", "json"]
#: ``envelope``: the 2.9 protocol (``{type, data, timestamp}``); ``bare``: each frame is one
#: ``MonitoringMetrics`` object and nothing else (what the Takhin console's own dashboard reads).
Format = Literal["envelope", "bare"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name.replace('_', '-')} must be > 0, got {value}")


def _mask_keys(keys: tuple[str, ...]) -> str:
    return repr(tuple("***" for _ in keys))


def _mask_values(pairs: tuple[tuple[str, str], ...]) -> str:
    return repr(tuple((key, "***") for key, _ in pairs))


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
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=_mask_keys)
    publish_keys: tuple[str, ...] = attrs.field(default=(), repr=_mask_keys)
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
    #: Wire format of connections that do not ask (``?format=``).
    format: Format = "envelope"
    #: Kafka bootstrap servers (``host:port,...``) for ``source="kafka"``.
    kafka_bootstrap: str | None = None
    #: Extra librdkafka client properties (TLS, SASL...), as ``(key, value)`` pairs.
    #: Values are secrets as far as ``repr`` goes (masked).
    kafka_config: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=_mask_values)
    #: Show internal topics (``__consumer_offsets``...) in snapshots of the kafka source.
    show_internal_topics: bool = False
    #: Largest Prometheus exposition a scrape accepts (bytes).
    scrape_max_bytes: int = DEFAULT_SCRAPE_MAX_BYTES
    #: Announce topic/group changes found by diffing successive snapshots.
    detect_changes: bool = True
    #: Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    compression: bool = True
    compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE
    max_channels: int = DEFAULT_MAX_CHANNELS
    command_rate: float = DEFAULT_COMMAND_RATE
    command_burst: int = DEFAULT_COMMAND_BURST
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    #: Seconds of chart history kept on the server for a client that asks (``history``).
    series_window: float = DEFAULT_SERIES_WINDOW
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
