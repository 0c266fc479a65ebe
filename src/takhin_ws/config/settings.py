"""Every tunable of the service, with its default, its flag and its checks, in one place.

A leaf module (it imports only `config/options` and `config/checks`): the modules
that need a default (the hub, the queue, the transport) import it from here.
:class:`Settings` checks itself when it is made, so the command line and an embedding
program get the same :class:`SettingsError` for the same bad value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs
from attrs import frozen

from .checks import (
    SettingsError,
    choice,
    flag,
    has_module,
    hosts,
    missing_extra,
    number,
    origins,
    show,
    strings,
    url,
)
from .options import (
    FORMATS,
    LOG_FORMATS,
    LOG_LEVELS,
    SOURCES,
    env_values,
    resolve_references,
    resolve_secret,
)

__all__ = ["Settings", "SettingsError"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080
DEFAULT_INTERVAL: Final = 2.0
#: WebSocket clients accepted before the next upgrade is refused (503).
DEFAULT_MAX_CLIENTS: Final = 10_000
#: Messages queued for one client that is not keeping up (drop-oldest beyond).
DEFAULT_QUEUE_SIZE: Final = 256
#: Events kept per stream (``topics``, ``groups``) for resume after a reconnect.
DEFAULT_HISTORY_SIZE: Final = 1000
#: Seconds a client's socket may take no byte while data waits for it. 30, not 10: a
#: client reading a steady 10 KB/s with its kernel's default 128 KiB receive buffer
#: advertises a zero window for ~12 s at a time (it reopens only once about half the
#: buffer is free, found by the sender's backed-off window probes), and nothing on the
#: server moves meanwhile (neither ``send`` nor TCP_INFO's bytes acked or send window).
DEFAULT_WRITE_TIMEOUT: Final = 30.0
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
#: Events one ``POST /api/events`` may carry (413 ``batch_too_large`` beyond).
DEFAULT_MAX_BATCH_EVENTS: Final = 1000
#: Seconds, and how many, ``Idempotency-Key`` answers of ``POST /api/events`` are kept
#: (a retried batch is answered as the first time, not published twice).
DEFAULT_IDEMPOTENCY_TTL: Final = 300.0
DEFAULT_IDEMPOTENCY_KEYS: Final = 1000
DEFAULT_UNREADY_AFTER: Final = 3
#: Failed kafka ticks in a row before the source makes a new client.
DEFAULT_KAFKA_RESET_AFTER: Final = 3
#: Seconds a refused client is asked to wait (``Retry-After``) when the hub is full.
DEFAULT_RETRY_AFTER: Final = 5
#: Channels one connection may be subscribed to at once (``too_many_channels`` beyond).
DEFAULT_MAX_CHANNELS: Final = 256
#: Metrics views (``metrics:lean``, ``metrics:group:<id>``, ``metrics:topic:<name>``) one
#: connection may be subscribed to at once (``too_many_views`` beyond).
DEFAULT_MAX_VIEWS: Final = 8
#: Distinct metrics views the server builds per tick at most (a subscribe that would
#: add one more is refused with ``views_unavailable``): ~20 us and ~2 KiB each.
DEFAULT_MAX_DISTINCT_VIEWS: Final = 1000
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
#: Seconds of clock skew tolerated on a token's ``exp``, ``nbf`` and ``iat``.
DEFAULT_TOKEN_LEEWAY: Final = 5.0
#: Seconds before a token's ``exp`` at which its connection is sent ``token_expiring``.
DEFAULT_TOKEN_EXPIRY_NOTICE: Final = 30.0
#: Largest ``--token-leeway`` (a leeway of hours would make ``exp`` meaningless).
MAX_TOKEN_LEEWAY: Final = 300.0
#: Shortest HS256 secret: the hash's size (RFC 7518 section 3.2).
MIN_TOKEN_SECRET: Final = 32
#: Ticks a consumer group's status is judged over (``--lag-window``): 20 s at 2 s.
DEFAULT_LAG_WINDOW: Final = 10

# Upper bounds of the sizes that allocate (a typo must not take the machine's memory).
MAX_SYNTHETIC_TOPICS: Final = 10_000
MAX_SYNTHETIC_GROUPS: Final = 10_000
MAX_QUEUE_SIZE: Final = 100_000
MAX_HISTORY_SIZE: Final = 100_000
MAX_CHANNELS_LIMIT: Final = 10_000
MAX_DISTINCT_VIEWS_LIMIT: Final = 100_000
MAX_MESSAGE_SIZE_LIMIT: Final = 64 * 1024 * 1024
MAX_BODY_SIZE_LIMIT: Final = 64 * 1024 * 1024
MAX_BATCH_EVENTS_LIMIT: Final = 1_000_000
MAX_IDEMPOTENCY_KEYS_LIMIT: Final = 1_000_000
MAX_SCRAPE_BYTES_LIMIT: Final = 1024 * 1024 * 1024
#: Points of chart series one server keeps (``series_window / interval``).
MAX_SERIES_POINTS: Final = 100_000
#: The longest status window: each partition of each group keeps this many offsets.
MAX_LAG_WINDOW: Final = 1000

Source = Literal["synthetic", "prometheus", "kafka"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
#: ``envelope``: the 2.9 protocol (``{type, data, timestamp}``); ``bare``: each frame is one
#: ``MonitoringMetrics`` object and nothing else (what the Takhin console's own dashboard reads).
Format = Literal["envelope", "bare"]


def _mask_keys(keys: tuple[str, ...]) -> str:
    return repr(tuple("***" for _ in keys))


def _mask_values(pairs: tuple[tuple[str, str], ...]) -> str:
    return repr(tuple((key, "***") for key, _ in pairs))


def _mask_url(value: str | None) -> str:
    """A URL with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(value) if value else None
        if parts is None or parts.password is None:
            return repr(value)
        host = parts.netloc.rpartition("@")[2]
        return repr(parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl())
    except ValueError:
        return "'***'"


def _host(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise SettingsError(attribute.name, "must not be empty (0.0.0.0 or :: listens everywhere)")


def _bootstrap(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or any(not part.strip() for part in value.split(",")):
        raise SettingsError(attribute.name, "must be HOST:PORT[,HOST:PORT...]")


def _pairs(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    ok = isinstance(value, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in value
    )
    if not ok:
        raise SettingsError(attribute.name, "must be a tuple of (key, value) string pairs")
    if any(not key.strip() for key, _ in value):
        raise SettingsError(attribute.name, "has an empty key")


def _optional_secret(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SettingsError(attribute.name, "must not be empty (leave it unset for none)")


_int = number(integer=True)
_EMPTY_KEY: Final = ": an empty key does not turn authentication off (leave it unset for none)"
_seconds = number(gt=0)


@frozen(kw_only=True)
class Settings:
    """Configuration of one takhin-ws server (the CLI flags, as a value).

    Every value is checked when the object is made: a bad one raises
    :class:`SettingsError` (a ``ValueError``) naming the setting. ``log_level`` and
    ``log_format`` apply to ``python -m takhin_ws`` only: a program that embeds takhin-ws
    configures :mod:`logging` itself (the ``takhin_ws`` loggers).
    """

    host: str = attrs.field(default=DEFAULT_HOST, validator=_host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=number(integer=True, ge=0, le=65535))
    interval: float = attrs.field(default=DEFAULT_INTERVAL, validator=_seconds)
    source: Source = attrs.field(default="synthetic", validator=choice(SOURCES))
    prometheus_url: str | None = attrs.field(
        default=None, validator=url(("http", "https"), "http://host:9090/metrics"), repr=_mask_url
    )
    synthetic_topics: int = attrs.field(
        default=8, validator=number(integer=True, ge=1, le=MAX_SYNTHETIC_TOPICS)
    )
    synthetic_groups: int = attrs.field(
        default=4, validator=number(integer=True, ge=0, le=MAX_SYNTHETIC_GROUPS)
    )
    synthetic_seed: int = attrs.field(default=0, validator=_int)
    #: Deadline of one collect (``None``: the interval).
    collect_timeout: float | None = attrs.field(default=None, validator=number(gt=0, optional=True))
    unready_after: int = attrs.field(
        default=DEFAULT_UNREADY_AFTER, validator=number(integer=True, ge=1)
    )
    max_clients: int = attrs.field(
        default=DEFAULT_MAX_CLIENTS, validator=number(integer=True, ge=1)
    )
    queue_size: int = attrs.field(
        default=DEFAULT_QUEUE_SIZE, validator=number(integer=True, ge=1, le=MAX_QUEUE_SIZE)
    )
    history_size: int = attrs.field(
        default=DEFAULT_HISTORY_SIZE, validator=number(integer=True, ge=0, le=MAX_HISTORY_SIZE)
    )
    history_ttl: float | None = attrs.field(default=None, validator=number(ge=0, optional=True))
    api_keys: tuple[str, ...] = attrs.field(
        default=(), validator=strings("key", _EMPTY_KEY), repr=_mask_keys
    )
    publish_keys: tuple[str, ...] = attrs.field(
        default=(), validator=strings("key", _EMPTY_KEY), repr=_mask_keys
    )
    allowed_origins: tuple[str, ...] = attrs.field(
        default=(), validator=[strings("origin"), origins]
    )
    #: Names clients reach the server by (``Host``), beyond IP addresses and localhost
    #: (DNS rebinding protection; ``*``: any). None listed: any on a non-loopback bind.
    allowed_hosts: tuple[str, ...] = attrs.field(default=(), validator=[strings("host"), hosts])
    ping_interval: float = attrs.field(default=DEFAULT_PING_INTERVAL, validator=_seconds)
    ping_timeout: float = attrs.field(default=DEFAULT_PING_TIMEOUT, validator=_seconds)
    write_timeout: float = attrs.field(default=DEFAULT_WRITE_TIMEOUT, validator=_seconds)
    handshake_timeout: float = attrs.field(default=DEFAULT_HANDSHAKE_TIMEOUT, validator=_seconds)
    shutdown_timeout: float = attrs.field(default=DEFAULT_SHUTDOWN_TIMEOUT, validator=number(ge=0))
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        validator=number(integer=True, ge=1, le=MAX_MESSAGE_SIZE_LIMIT),
    )
    max_body_size: int = attrs.field(
        default=DEFAULT_MAX_BODY_SIZE, validator=number(integer=True, ge=1, le=MAX_BODY_SIZE_LIMIT)
    )
    send_buffer_size: int = attrs.field(
        default=DEFAULT_SEND_BUFFER_SIZE, validator=number(integer=True, ge=0)
    )
    bad_message_limit: int = attrs.field(
        default=DEFAULT_BAD_MESSAGE_LIMIT, validator=number(integer=True, ge=0)
    )
    bad_message_window: float = attrs.field(default=DEFAULT_BAD_MESSAGE_WINDOW, validator=_seconds)
    retry_after: int = attrs.field(
        default=DEFAULT_RETRY_AFTER, validator=number(integer=True, ge=0)
    )
    redis_url: str | None = attrs.field(
        default=None,
        validator=url(("redis", "rediss", "unix"), "redis://host:6379/0"),
        repr=_mask_url,
    )
    #: Wire format of connections that do not ask (``?format=``).
    format: Format = attrs.field(default="envelope", validator=choice(FORMATS))
    #: Kafka bootstrap servers (``host:port,...``) for ``source="kafka"``.
    kafka_bootstrap: str | None = attrs.field(default=None, validator=_bootstrap)
    #: Extra librdkafka client properties (TLS, SASL...), as ``(key, value)`` pairs;
    #: the values are masked in ``repr``.
    kafka_config: tuple[tuple[str, str], ...] = attrs.field(
        default=(), validator=_pairs, repr=_mask_values
    )
    #: Failed ticks in a row before the kafka source closes its client and makes a new one.
    kafka_reset_after: int = attrs.field(
        default=DEFAULT_KAFKA_RESET_AFTER, validator=number(integer=True, ge=1)
    )
    #: Show internal topics (``__consumer_offsets``...) in snapshots of the kafka source.
    show_internal_topics: bool = attrs.field(default=False, validator=flag)
    #: Largest Prometheus exposition a scrape accepts (bytes).
    scrape_max_bytes: int = attrs.field(
        default=DEFAULT_SCRAPE_MAX_BYTES,
        validator=number(integer=True, ge=1, le=MAX_SCRAPE_BYTES_LIMIT),
    )
    #: Announce topic/group changes found by diffing successive snapshots.
    detect_changes: bool = attrs.field(default=True, validator=flag)
    #: Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    compression: bool = attrs.field(default=True, validator=flag)
    compress_min_size: int = attrs.field(
        default=DEFAULT_COMPRESS_MIN_SIZE, validator=number(integer=True, ge=0)
    )
    max_channels: int = attrs.field(
        default=DEFAULT_MAX_CHANNELS, validator=number(integer=True, ge=1, le=MAX_CHANNELS_LIMIT)
    )
    max_views: int = attrs.field(
        default=DEFAULT_MAX_VIEWS, validator=number(integer=True, ge=0, le=MAX_CHANNELS_LIMIT)
    )
    max_distinct_views: int = attrs.field(
        default=DEFAULT_MAX_DISTINCT_VIEWS,
        validator=number(integer=True, ge=0, le=MAX_DISTINCT_VIEWS_LIMIT),
    )
    command_rate: float = attrs.field(default=DEFAULT_COMMAND_RATE, validator=_seconds)
    command_burst: int = attrs.field(
        default=DEFAULT_COMMAND_BURST, validator=number(integer=True, ge=1)
    )
    body_timeout: float = attrs.field(default=DEFAULT_BODY_TIMEOUT, validator=_seconds)
    max_batch_events: int = attrs.field(
        default=DEFAULT_MAX_BATCH_EVENTS,
        validator=number(integer=True, ge=1, le=MAX_BATCH_EVENTS_LIMIT),
    )
    idempotency_ttl: float = attrs.field(default=DEFAULT_IDEMPOTENCY_TTL, validator=_seconds)
    idempotency_keys: int = attrs.field(
        default=DEFAULT_IDEMPOTENCY_KEYS,
        validator=number(integer=True, ge=0, le=MAX_IDEMPOTENCY_KEYS_LIMIT),
    )
    #: Seconds of chart history kept on the server for a client that asks (``history``).
    series_window: float = attrs.field(default=DEFAULT_SERIES_WINDOW, validator=_seconds)
    #: HS256 secret of signed connection tokens (``env:NAME`` reads ``$NAME``).
    token_secret: str | None = attrs.field(
        default=None, validator=_optional_secret, repr=lambda v: repr(v and "***")
    )
    #: RS256/ES256 public keys of signed tokens: PEM or JWKS files (several: rotation).
    token_public_keys: tuple[str, ...] = attrs.field(default=(), validator=strings("file"))
    token_leeway: float = attrs.field(
        default=DEFAULT_TOKEN_LEEWAY, validator=number(ge=0, le=MAX_TOKEN_LEEWAY)
    )
    #: ``aud`` a token must name (unchecked when unset).
    token_audience: str | None = attrs.field(default=None, validator=_optional_secret)
    #: ``iss`` a token must carry (unchecked when unset).
    token_issuer: str | None = attrs.field(default=None, validator=_optional_secret)
    token_expiry_notice: float = attrs.field(
        default=DEFAULT_TOKEN_EXPIRY_NOTICE, validator=number(ge=0)
    )
    #: Where the dashboard fetches a fresh token (``GET``, same origin, JSON ``{"token"}``).
    token_url: str | None = attrs.field(default=None, validator=_optional_secret)
    #: Ticks (snapshots) a consumer group's lag status is judged over (at least 2).
    lag_window: int = attrs.field(
        default=DEFAULT_LAG_WINDOW, validator=number(integer=True, ge=2, le=MAX_LAG_WINDOW)
    )
    #: Command line only (see the class docstring).
    log_level: LogLevel = attrs.field(default="info", validator=choice(LOG_LEVELS))
    #: Command line only (see the class docstring).
    log_format: LogFormat = attrs.field(default="text", validator=choice(LOG_FORMATS))

    def __attrs_post_init__(self) -> None:
        if self.source == "prometheus" and not self.prometheus_url:
            raise SettingsError(
                "prometheus_url", "is required with {other} prometheus", other="source"
            )
        if self.source == "kafka":
            if not self.kafka_bootstrap:
                raise SettingsError(
                    "kafka_bootstrap", "is required with {other} kafka", other="source"
                )
            if not has_module("confluent_kafka"):
                raise missing_extra("source", "confluent_kafka", "kafka")
        if self.redis_url is not None and not has_module("coredis"):
            raise missing_extra("redis_url", "coredis")
        if self.ping_timeout <= self.ping_interval:
            raise SettingsError(
                "ping_timeout",
                f"must be greater than {{other}} ({show(self.ping_interval)}), got "
                f"{show(self.ping_timeout)}: idle clients would be dropped before a ping",
                other="ping_interval",
            )
        if self.token_secret is not None and len(self.token_secret.encode()) < MIN_TOKEN_SECRET:
            raise SettingsError(
                "token_secret", f"must be at least {MIN_TOKEN_SECRET} bytes (RFC 7518 3.2)"
            )
        if self.series_window / self.interval > MAX_SERIES_POINTS:
            raise SettingsError(
                "series_window",
                f"must be at most {MAX_SERIES_POINTS} x {{other}} ({show(self.interval)} s), "
                f"got {show(self.series_window)} s",
                other="interval",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the ``TAKHIN_WS_*`` variables of *env* (default ``os.environ``).

        The variables are those of the command line (``TAKHIN_WS_PORT``...); unset ones
        keep their defaults. A bad value raises :class:`SettingsError` naming it.
        """
        env = os.environ if env is None else env
        values = env_values(env)
        values["kafka_config"] = resolve_references(values.get("kafka_config", ()), env)
        values["token_secret"] = resolve_secret("token_secret", values.get("token_secret"), env)
        return cls(**values)
