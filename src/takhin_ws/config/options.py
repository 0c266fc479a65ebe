"""How the command line and the environment spell each setting: flags, variables, parsers.

A leaf beside `config/settings` (which reads the environment with it in
:meth:`~takhin_ws.Settings.from_env`); `config/cli` builds its parser from :data:`OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from attrs import frozen

from .checks import SettingsError

__all__ = [
    "ENV_PREFIX",
    "FORMATS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OPTIONS",
    "SOURCES",
    "Option",
    "env_name",
    "env_values",
    "parse_list",
    "resolve_references",
    "resolve_secret",
]

SOURCES: Final = ("synthetic", "prometheus", "kafka")
FORMATS: Final = ("envelope", "bare")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")

ENV_PREFIX: Final = "TAKHIN_WS_"
_TRUE: Final = ("true", "1", "yes", "on")
_FALSE: Final = ("false", "0", "no", "off")


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none", "off") else parse_float(text)


def parse_bool(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"expected true or false (1/0, yes/no), got {text!r}")


def parse_list(text: str) -> tuple[str, ...]:
    """A comma list; an empty item stays (and is refused where it would mean "none")."""
    return tuple(part.strip() for part in text.split(","))


def parse_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE``; the value is never echoed (it may be a secret)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected KEY=VALUE (the value is not shown)")
    return key.strip(), value


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """One ``KEY=VALUE`` per line or, on one line, comma separated."""
    parts = text.splitlines() if "\n" in text else text.split(",")
    return tuple(parse_pair(part.strip()) for part in parts if part.strip())


def resolve_references(
    pairs: tuple[tuple[str, str], ...], env: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """A value ``env:NAME`` is the value of the environment variable ``NAME``."""
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if value.startswith("env:"):
            name = value.removeprefix("env:")
            if name not in env:
                raise SettingsError(
                    "kafka_config", f"{key}: environment variable {name!r} is not set"
                )
            value = env[name]
        out.append((key, value))
    return tuple(out)


def resolve_secret(setting: str, value: str | None, env: Mapping[str, str]) -> str | None:
    """A secret given as ``env:NAME`` is the value of the environment variable ``NAME``."""
    if value is None or not value.startswith("env:"):
        return value
    name = value.removeprefix("env:")
    if name not in env:
        raise SettingsError(setting, f"environment variable {name!r} is not set")
    return env[name]


Kind = Literal["value", "list", "pairs", "bool"]


@frozen
class Option:
    """One setting as the command line and the environment spell it."""

    setting: str
    flag: str
    help: str
    parse: Callable[[str], Any] = str
    kind: Kind = "value"
    choices: tuple[str, ...] | None = None

    @property
    def variable(self) -> str:
        return env_name(self.flag)

    def parse_env(self, text: str) -> Any:
        if self.kind == "list":
            return parse_list(text)
        if self.kind == "pairs":
            return parse_pairs(text)
        if self.kind == "bool":
            return parse_bool(text)
        value = self.parse(text)
        return value.lower() if self.choices else value


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def _o(setting: str, flag: str, help: str, parse: Callable[[str], Any] = str) -> Option:
    return Option(setting, flag, help, parse)


OPTIONS: Final = (
    _o("host", "--host", "interface to listen on"),
    _o("port", "--port", "TCP port for WebSocket and HTTP (0 picks a free one)", parse_int),
    _o("interval", "--interval", "seconds between metrics snapshots", parse_float),
    Option("source", "--source", "where metrics come from", choices=SOURCES),
    _o("prometheus_url", "--prometheus-url", "broker metrics URL (--source prometheus)"),
    _o("kafka_bootstrap", "--kafka-bootstrap", "brokers HOST:PORT[,...] (--source kafka)"),
    Option(
        "kafka_config",
        "--kafka-config",
        "client property KEY=VALUE for --source kafka (repeatable; VALUE env:NAME reads $NAME)",
        parse_pair,
        "pairs",
    ),
    _o(
        "kafka_reset_after",
        "--kafka-reset-after",
        "failed kafka ticks in a row before a new client is made",
        parse_int,
    ),
    Option(
        "show_internal_topics", "--show-internal-topics", "show __consumer_offsets...", kind="bool"
    ),
    _o(
        "scrape_max_bytes", "--scrape-max-bytes", "largest Prometheus exposition (bytes)", parse_int
    ),
    Option(
        "detect_changes",
        "--detect-changes",
        "announce changes found between snapshots",
        kind="bool",
    ),
    _o("synthetic_topics", "--synthetic-topics", "topics in the synthetic cluster", parse_int),
    _o(
        "synthetic_groups",
        "--synthetic-groups",
        "consumer groups in the synthetic cluster",
        parse_int,
    ),
    _o("synthetic_seed", "--synthetic-seed", "seed of the synthetic cluster", parse_int),
    _o(
        "collect_timeout",
        "--collect-timeout",
        "deadline of one collect (s; off = the interval)",
        parse_optional_float,
    ),
    _o("unready_after", "--unready-after", "failed collects before /readyz turns 503", parse_int),
    _o("max_clients", "--max-clients", "WebSocket clients accepted before 503", parse_int),
    _o("queue_size", "--queue-size", "messages queued per slow client (drop-oldest)", parse_int),
    _o("history_size", "--history-size", "events kept per stream for resume", parse_int),
    _o(
        "history_ttl",
        "--history-ttl",
        "seconds an event stays resumable (off = no limit)",
        parse_optional_float,
    ),
    Option(
        "api_keys",
        "--api-key",
        "API key clients must present (repeatable or comma list)",
        kind="list",
    ),
    Option("publish_keys", "--publish-key", "key for POST /api/events (repeatable)", kind="list"),
    Option(
        "allowed_origins",
        "--allowed-origin",
        "browser Origin allowed (repeatable; * = any)",
        kind="list",
    ),
    Option(
        "allowed_hosts",
        "--allowed-host",
        "Host name clients reach the server by (repeatable; * = any)",
        kind="list",
    ),
    _o("ping_interval", "--ping-interval", "seconds between WebSocket pings", parse_float),
    _o(
        "ping_timeout", "--ping-timeout", "silence (s) after which a client is dropped", parse_float
    ),
    _o("write_timeout", "--write-timeout", "seconds a backed-up client may stall", parse_float),
    _o(
        "handshake_timeout",
        "--handshake-timeout",
        "deadline for request and handshake",
        parse_float,
    ),
    _o(
        "shutdown_timeout", "--shutdown-timeout", "seconds to wait for clients on exit", parse_float
    ),
    _o(
        "max_message_size",
        "--max-message-size",
        "largest client message in bytes (1009)",
        parse_int,
    ),
    _o("max_body_size", "--max-body-size", "largest POST /api/events body in bytes", parse_int),
    _o(
        "body_timeout", "--body-timeout", "seconds an HTTP request body may take (408)", parse_float
    ),
    _o(
        "max_batch_events",
        "--max-batch-events",
        "events one POST /api/events may carry (413)",
        parse_int,
    ),
    _o(
        "idempotency_ttl",
        "--idempotency-ttl",
        "seconds an Idempotency-Key's answer is kept",
        parse_float,
    ),
    _o(
        "idempotency_keys",
        "--idempotency-keys",
        "Idempotency-Key answers kept (0 = none)",
        parse_int,
    ),
    _o(
        "send_buffer_size",
        "--send-buffer-size",
        "kernel send buffer per client (0 = OS default)",
        parse_int,
    ),
    _o(
        "bad_message_limit",
        "--bad-message-limit",
        "invalid messages per window before close 1008",
        parse_int,
    ),
    _o(
        "bad_message_window",
        "--bad-message-window",
        "window (s) of --bad-message-limit",
        parse_float,
    ),
    _o(
        "retry_after",
        "--retry-after",
        "Retry-After (s) of a 503 when the server is full",
        parse_int,
    ),
    _o("max_channels", "--max-channels", "channels one connection may subscribe to", parse_int),
    _o("max_views", "--max-views", "metrics views one connection may subscribe to", parse_int),
    _o(
        "max_distinct_views",
        "--max-distinct-views",
        "distinct metrics views built per tick, server-wide",
        parse_int,
    ),
    _o(
        "command_rate", "--command-rate", "client messages per second (then throttled)", parse_float
    ),
    _o("command_burst", "--command-burst", "client messages allowed in a burst", parse_int),
    _o("redis_url", "--redis-url", "redis://host:port/db to share events between nodes"),
    Option(
        "format", "--format", "wire format of clients that do not ask (?format=)", choices=FORMATS
    ),
    Option(
        "compression", "--compression", "permessage-deflate with clients that offer it", kind="bool"
    ),
    _o(
        "compress_min_size",
        "--compress-min-size",
        "smaller frames are sent uncompressed",
        parse_int,
    ),
    _o("series_window", "--series-window", "seconds of chart history kept (history)", parse_float),
    _o(
        "token_secret", "--token-secret", "HS256 secret of connection tokens (env:NAME reads $NAME)"
    ),
    Option(
        "token_public_keys",
        "--token-public-key",
        "RS256/ES256 public key of tokens: PEM or JWKS file (repeatable: rotation)",
        kind="list",
    ),
    _o(
        "token_leeway",
        "--token-leeway",
        "seconds of clock skew allowed on exp/nbf/iat",
        parse_float,
    ),
    _o("token_audience", "--token-audience", "aud a token must name (unset: not checked)"),
    _o("token_issuer", "--token-issuer", "iss a token must carry (unset: not checked)"),
    _o(
        "token_expiry_notice",
        "--token-expiry-notice",
        "seconds before exp to send token_expiring",
        parse_float,
    ),
    _o("token_url", "--token-url", "URL the dashboard fetches a fresh token from"),
    _o("lag_window", "--lag-window", "ticks a group's lag status is judged over", parse_int),
    Option(
        "log_level",
        "--log-level",
        "log level (this program's; an embedding program configures logging itself)",
        choices=LOG_LEVELS,
    ),
    Option(
        "log_format",
        "--log-format",
        "log format (this program's; an embedding program configures logging itself)",
        choices=LOG_FORMATS,
    ),
)


def env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings the ``TAKHIN_WS_*`` variables of *env* give, parsed (not yet checked)."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        text = env.get(option.variable)
        if text is None:
            continue
        try:
            values[option.setting] = option.parse_env(text)
        except ValueError as exc:
            raise SettingsError(option.setting, str(exc), variable=option.variable) from None
    return values
