"""``python -m takhin_ws``: flags, environment, logging, signals and exit codes.

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the server cannot
run (address in use...), 2 for a bad flag or environment value.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import attrs
import orjson
import trio

from ._config import Settings
from ._exceptions import ListenError
from ._server import open_server

__all__ = ["main", "parse_args"]

ENV_PREFIX = "TAKHIN_WS_"
log = logging.getLogger("takhin_ws")


class _EnvValueError(Exception):
    """A bad value in a TAKHIN_WS_* variable (reported naming the variable)."""


class _Parser(argparse.ArgumentParser):
    parsing_env = False

    def error(self, message: str) -> NoReturn:
        if self.parsing_env:
            raise _EnvValueError(message)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("", "none", "off") else _float(text)


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(out)


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _bool(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false (1/0, yes/no), got {text!r}")


def _key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--kafka-config``; the value is never echoed (it may be a secret)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE (the value is not shown)")
    return key.strip(), value


def _env_items(value: str) -> list[str]:
    """A list variable: one item per line, or (on one line) comma separated."""
    parts = value.splitlines() if "\n" in value else value.split(",")
    return [part.strip() for part in parts if part.strip()]


# (flag, Settings attribute, type, help); list-valued flags are repeatable.
_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--host", "host", str, "interface to listen on"),
    ("--port", "port", _int, "TCP port for WebSocket and HTTP (0 picks a free one)"),
    ("--interval", "interval", _float, "seconds between metrics snapshots"),
    ("--source", "source", str, "where metrics come from"),
    ("--prometheus-url", "prometheus_url", str, "broker metrics URL for --source prometheus"),
    ("--kafka-bootstrap", "kafka_bootstrap", str, "brokers HOST:PORT[,...] (--source kafka)"),
    (
        "--kafka-config",
        "kafka_config",
        _key_value,
        "client property KEY=VALUE for --source kafka (repeatable; VALUE env:NAME reads $NAME)",
    ),
    ("--show-internal-topics", "show_internal_topics", _bool, "show __consumer_offsets..."),
    ("--scrape-max-bytes", "scrape_max_bytes", _int, "largest Prometheus exposition (bytes)"),
    ("--detect-changes", "detect_changes", _bool, "announce changes found between snapshots"),
    ("--synthetic-topics", "synthetic_topics", _int, "topics in the synthetic cluster"),
    ("--synthetic-groups", "synthetic_groups", _int, "consumer groups in the synthetic cluster"),
    ("--synthetic-seed", "synthetic_seed", _int, "seed of the synthetic cluster"),
    ("--collect-timeout", "collect_timeout", _optional_float, "deadline of one collect (s)"),
    ("--unready-after", "unready_after", _int, "failed collects before /readyz turns 503"),
    ("--max-clients", "max_clients", _int, "WebSocket clients accepted before 503"),
    ("--queue-size", "queue_size", _int, "messages queued per slow client (drop-oldest)"),
    ("--history-size", "history_size", _int, "events kept per stream for resume"),
    ("--history-ttl", "history_ttl", _optional_float, "seconds an event stays resumable"),
    ("--api-key", "api_keys", str, "API key clients must present (repeatable or comma list)"),
    ("--publish-key", "publish_keys", str, "key for POST /api/events (repeatable)"),
    ("--allowed-origin", "allowed_origins", str, "browser Origin allowed (repeatable; * = any)"),
    ("--ping-interval", "ping_interval", _float, "seconds between WebSocket pings"),
    ("--ping-timeout", "ping_timeout", _float, "silence (s) after which a client is dropped"),
    ("--write-timeout", "write_timeout", _float, "seconds a backed-up client may stall"),
    ("--handshake-timeout", "handshake_timeout", _float, "deadline for request and handshake"),
    ("--shutdown-timeout", "shutdown_timeout", _float, "seconds to wait for clients on exit"),
    ("--max-message-size", "max_message_size", _int, "largest client message in bytes (1009)"),
    ("--max-body-size", "max_body_size", _int, "largest POST /api/events body in bytes"),
    (
        "--send-buffer-size",
        "send_buffer_size",
        _int,
        "kernel send buffer per client (0 = OS default)",
    ),
    ("--redis-url", "redis_url", str, "redis://host:port/db to share events between nodes"),
    ("--format", "format", str, "wire format of clients that do not ask (?format=)"),
    ("--compression", "compression", _bool, "permessage-deflate with clients that offer it"),
    ("--compress-min-size", "compress_min_size", _int, "smaller frames are sent uncompressed"),
    ("--max-channels", "max_channels", _int, "channels one connection may subscribe to"),
    ("--command-rate", "command_rate", _float, "client messages per second (then throttled)"),
    ("--command-burst", "command_burst", _int, "client messages allowed in a burst"),
    ("--body-timeout", "body_timeout", _float, "seconds an HTTP request body may take (408)"),
    ("--series-window", "series_window", _float, "seconds of chart history kept (history)"),
    ("--log-level", "log_level", str, "debug, info, warning or error"),
    ("--log-format", "log_format", str, "text or json"),
]
_LISTS = {"api_keys", "publish_keys", "allowed_origins"}
#: repeatable flags whose items are kept whole (a value may hold a comma)
_PAIRS = {"kafka_config"}
_BOOLS = {"show_internal_topics", "detect_changes", "compression"}
_CHOICES = {
    "source": ("synthetic", "prometheus", "kafka"),
    "format": ("envelope", "bare"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("text", "json"),
}


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def build_parser() -> _Parser:
    defaults = Settings()
    parser = _Parser(
        prog="python -m takhin_ws",
        description=(
            "Stream Takhin cluster metrics and change events to WebSocket clients at "
            "/api/monitoring/ws. Every flag can also be set with the environment variable "
            f"{ENV_PREFIX}<FLAG> (for example {ENV_PREFIX}MAX_CLIENTS=500); flags win."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, name, kind, text in _FLAGS:
        help_text = f"{text} [env {_env_name(flag)}]"
        if name in _LISTS:
            parser.add_argument(flag, dest=name, action="append", help=help_text)
        elif name in _PAIRS:
            parser.add_argument(
                flag, dest=name, type=kind, action="append", metavar="KEY=VALUE", help=help_text
            )
        elif name in _BOOLS:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=getattr(defaults, name),
                help=help_text,
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                type=kind,
                choices=_CHOICES.get(name),
                default=getattr(defaults, name),
                help=help_text,
            )
    return parser


def parse_args(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from *env* (``os.environ``) overlaid by *argv*; exits 2 on bad input."""
    env = dict(os.environ if env is None else env)
    parser = build_parser()
    env_args: list[str] = []
    for flag, name, _, _ in _FLAGS:
        value = env.get(_env_name(flag))
        if value is None:
            continue
        if name in _LISTS:
            env_args += [flag, value]
        elif name in _PAIRS:
            for item in _env_items(value):
                env_args += [flag, item]
        elif name in _BOOLS:
            try:
                on = _bool(value)
            except argparse.ArgumentTypeError as exc:
                parser.exit(2, f"{parser.prog}: error: {_env_name(flag)}: {exc}\n")
            env_args.append(flag if on else "--no-" + flag.removeprefix("--"))
        else:
            env_args.append(f"{flag}={value}")
    parser.parsing_env = True
    try:
        from_env = parser.parse_args(env_args)
    except _EnvValueError as exc:
        message = str(exc)
        for flag, _, _, _ in _FLAGS:
            message = message.replace(f"argument {flag}:", f"{_env_name(flag)}:")
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    parser.parsing_env = False
    args = parser.parse_args(list(argv or []), namespace=from_env)
    for name in _LISTS:
        setattr(args, name, _split(getattr(args, name)))
    args.kafka_config = _resolve_secrets(parser, args.kafka_config or (), env)
    # settings without a flag (bad_message_limit...) keep their defaults
    values = {
        a.name: getattr(args, a.name) for a in attrs.fields(Settings) if hasattr(args, a.name)
    }
    try:
        return Settings(**values)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))


def _resolve_secrets(
    parser: _Parser, pairs: Sequence[tuple[str, str]], env: dict[str, str]
) -> tuple[tuple[str, str], ...]:
    """``KEY=env:NAME`` takes the value of the environment variable NAME."""
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if value.startswith("env:"):
            name = value.removeprefix("env:")
            if name not in env:
                parser.error(f"--kafka-config {key}: environment variable {name!r} is not set")
            value = env[name]
        out.append((key, value))
    return tuple(out)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("trio-websocket").setLevel(max(logging.INFO, root.level))


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(settings) as server:
            log.info("takhin-ws serving %s (WebSocket %s)", server.url + "/", server.ws_url)
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                break


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(settings.log_level, settings.log_format)
    try:
        trio.run(serve, settings)
    except ListenError as exc:
        print(f"takhin-ws: error: {exc}", file=sys.stderr)
        return 1
    return 0
