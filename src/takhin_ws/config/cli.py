"""``python -m takhin_ws`` and ``takhin-ws``: flags, environment, logging, signals, exit codes.

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the server cannot
run (address in use...), 2 for a bad flag or environment value.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NoReturn

import orjson
import trio

from .. import __version__
from .._exceptions import ListenError
from ..core.access.tokens import token_verifier
from ..net.serving import open_server
from .options import (
    ENV_PREFIX,
    OPTIONS,
    Option,
    env_name,
    env_values,
    parse_list,
    resolve_references,
    resolve_secret,
)
from .settings import Settings, SettingsError

__all__ = ["ENV_PREFIX", "configure_logging", "main", "parse_args", "program_name"]

log = logging.getLogger("takhin_ws")

#: What ``python -m takhin_ws`` calls itself (``sys.argv[0]`` is then ``.../__main__.py``).
MODULE_PROG: Final = "python -m takhin_ws"
#: Loggers that log every request at INFO (the Prometheus scrape: 1,800 lines an hour);
#: quiet unless ``--log-level debug``.
CHATTY_LOGGERS: Final = ("httpx", "httpcore")
#: Collections of the second-youngest generation between two full collections of the
#: server's own process (CPython's default is 10): a full one walks everything created
#: since start-up (the last snapshots, the lag tracker's state: 4-9 ms of a held event
#: loop at 12,000 partitions, every few ticks by default); cyclic garbage mostly dies
#: young, in the generations collected as before.
FULL_COLLECTION_EVERY: Final = 100
_FLAGS: Final = {option.setting: option.flag for option in OPTIONS}


def program_name(argv0: str | None = None) -> str:
    """``takhin-ws`` for the console script, ``python -m takhin_ws`` for the module."""
    base = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return MODULE_PROG if base in ("", "__main__.py", "-c", "-m") else base


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _argument_type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return option.parse_env(text) if option.kind != "pairs" else option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.setting  # argparse names the type in some messages
    return convert


def _flag_and_variable(setting: str) -> str:
    flag = _FLAGS.get(setting)
    return f"{flag} ({env_name(flag)})" if flag else setting


def _flag(setting: str) -> str:
    return _FLAGS.get(setting, setting)


def build_parser(prog: str = MODULE_PROG) -> _Parser:
    defaults = Settings()
    parser = _Parser(
        prog=prog,
        description=(
            "Stream Takhin cluster metrics and change events to WebSocket clients at "
            "/api/monitoring/ws. Every flag can also be set with the environment variable "
            f"{ENV_PREFIX}<FLAG> (for example {ENV_PREFIX}MAX_CLIENTS=500); flags win. "
            "On/off flags take true/false (1/0, yes/no) in their variable."
        ),
        argument_default=argparse.SUPPRESS,  # only what is given overrides the environment
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for option in OPTIONS:
        default = getattr(defaults, option.setting)
        shown = "none" if default in (None, ()) else default
        text = f"{option.help} [env {option.variable}] (default: {shown})"
        if option.kind in ("list", "pairs"):
            metavar = "KEY=VALUE" if option.kind == "pairs" else None
            kind = _argument_type(option) if option.kind == "pairs" else str
            parser.add_argument(
                option.flag,
                dest=option.setting,
                action="append",
                type=kind,
                metavar=metavar,
                help=text,
            )
        elif option.kind == "bool":
            parser.add_argument(
                option.flag, dest=option.setting, action=argparse.BooleanOptionalAction, help=text
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.setting,
                type=_argument_type(option),
                choices=option.choices,
                help=text,
            )
    return parser


def parse_args(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    prog: str = MODULE_PROG,
) -> Settings:
    """Settings from *env* (``os.environ``) overlaid by *argv*; exits 2 on bad input.

    Repeatable flags (``--api-key``...) add to what their variable gives.
    """
    env = os.environ if env is None else env
    parser = build_parser(prog)
    try:
        values = env_values(env)
    except SettingsError as exc:
        parser.exit(2, f"{prog}: error: {exc}\n")
    given = vars(parser.parse_args(list(argv or [])))
    for option in OPTIONS:
        if option.setting not in given:
            continue
        value = given[option.setting]
        if option.kind == "list":
            value = sum((parse_list(v) for v in value), values.get(option.setting, ()))
        elif option.kind == "pairs":
            value = values.get(option.setting, ()) + tuple(value)
        values[option.setting] = value
    try:
        values["kafka_config"] = resolve_references(values.get("kafka_config", ()), env)
        values["token_secret"] = resolve_secret("token_secret", values.get("token_secret"), env)
        settings = Settings(**values)
    except SettingsError as exc:
        parser.exit(2, f"{prog}: error: {exc.describe(_flag_and_variable, _flag)}\n")
    try:
        token_verifier(settings)
    except ValueError as exc:
        parser.exit(2, f"{prog}: error: {_flag_and_variable('token_public_keys')}: {exc}\n")
    return settings


#: Attributes every LogRecord has; anything else came in through ``extra=``.
_RECORD_FIELDS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields given with ``extra=`` are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str) -> None:
    """The command line's logging: *level* (any case) and ``text`` or ``json`` on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("trio-websocket").setLevel(max(logging.INFO, root.level))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(
            root.level if root.level <= logging.DEBUG else logging.WARNING
        )


def freeze_startup() -> None:
    """Leave what the process holds once started (modules, classes, settings, the
    server's own structures: ~50,000 objects) out of the garbage collector's full
    collections: none of it is ever garbage, and walking it made every full collection
    (which a big metrics snapshot coming in triggers) a 10-40 ms pause of the event
    loop. Full collections then come every :data:`FULL_COLLECTION_EVERY` collections of
    the generation below (a tenth as often as by default). Only the server's own
    process does this; an embedding application keeps its own garbage-collector
    policy."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def serve_until_signal(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(settings) as server:
            freeze_startup()
            log.info("takhin-ws serving %s (WebSocket %s)", server.url + "/", server.ws_url)
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                break


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(sys.argv[1:] if argv is None else argv, prog=program_name())
    configure_logging(settings.log_level, settings.log_format)
    try:
        trio.run(serve_until_signal, settings)
    except ListenError as exc:
        print(f"takhin-ws: error: {exc}", file=sys.stderr)
        return 1
    return 0
