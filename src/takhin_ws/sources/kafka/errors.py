"""Errors and secrets of the ``kafka`` source: which Kafka errors fail a tick, what the
client reports on its own (its error callback and log lines), and which client
properties are secrets (masked in every repr and message)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from confluent_kafka import KafkaError, KafkaException

from ...core.metrics.snapshot import MetricsSourceError, MetricsSourceIncompatibleError

__all__ = [
    "FATAL",
    "GONE",
    "HANDSHAKE_FAILURES",
    "INCOMPATIBLE",
    "SECRET_WORDS",
    "ClientLog",
    "ErrorLog",
    "KafkaIncompatibleError",
    "KafkaSourceError",
    "error_of",
    "incompatibility",
    "is_incompatible",
    "is_secret",
    "mask_config",
]

#: librdkafka's own log lines (connection attempts...), all at debug level: the
#: producer already logs one line per failure streak.
client_logger: Final = logging.getLogger("takhin_ws.metrics.librdkafka")

#: Words that make a client property's value a secret (masked in reprs and messages).
SECRET_WORDS: Final = ("password", "secret", "jaas", "token", "credential", "key", "pem")

#: A partition error that means the topic went away during the tick: dropped quietly.
GONE: Final = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.GROUP_ID_NOT_FOUND,
    }
)
#: Errors about the cluster or the connection, not one partition: the tick fails.
FATAL: Final = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError._RESOLVE,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)


#: Errors that say the broker lacks a request or a version the source needs.
INCOMPATIBLE: Final = frozenset(
    {
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.INVALID_REQUEST,
        KafkaError._BAD_MSG,
    }
)
#: Signs in librdkafka's log that a connection broke off in the ApiVersions handshake.
HANDSHAKE_SIGNS: Final = ("in state APIVERSION_QUERY", "ApiVersionRequest failed")
#: Such handshakes seen, with no answer from the cluster ever, before the broker is
#: called incompatible rather than down.
HANDSHAKE_FAILURES: Final = 2


class KafkaSourceError(MetricsSourceError):
    """The cluster could not be read: unreachable, refused, too slow."""


class KafkaIncompatibleError(KafkaSourceError, MetricsSourceIncompatibleError):
    """The cluster answers, but not in the Kafka protocol as librdkafka speaks it."""


def is_incompatible(exc: BaseException) -> bool:
    """Whether *exc* says the cluster does not speak the protocol as the client does."""
    return isinstance(exc, MetricsSourceIncompatibleError)


def incompatibility(error: KafkaError | None) -> str | None:
    """What *error* says about the broker's protocol, if it says the broker lacks
    something the source needs (``None``: another kind of error)."""
    if error is None or error.code() not in INCOMPATIBLE:
        return None
    return f"it does not offer a request this source needs ({error.str()})"


def is_secret(key: str) -> bool:
    """Whether the client property *key* holds a secret (``sasl.password``...)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_config(config: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """*config* with the value of every secret property replaced by ``***``."""
    return tuple((key, "***" if is_secret(key) else value) for key, value in config)


def error_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class ClientLog:
    """librdkafka's log callback: its lines go to :data:`client_logger` at debug, and
    the ones that say the broker broke off or garbled the protocol handshake (the
    ApiVersions request every connection starts with) are counted, the last kept."""

    def __init__(self) -> None:
        #: Handshakes the broker closed, reset or answered unreadably.
        self.handshake_failures = 0
        #: The last such line (librdkafka's words, without its thread prefix).
        self.handshake_line: str | None = None

    def log(self, level: int, fmt: str, *args: object) -> None:
        client_logger.debug(fmt, *args)
        try:
            line = fmt % args if args else fmt
        except (TypeError, ValueError):
            return
        if any(sign in line for sign in HANDSHAKE_SIGNS):
            self.handshake_failures += 1
            self.handshake_line = line.rsplit("]: ", 1)[-1]

    def handshake(self) -> str | None:
        """Why the broker looks incompatible from the handshakes seen, or ``None``."""
        line = self.handshake_line
        if self.handshake_failures < HANDSHAKE_FAILURES or line is None:
            return None
        if "underflow" in line or "parse" in line.lower() or "invalid" in line.lower():
            what = "answers the protocol handshake (ApiVersions) with what cannot be read"
        else:
            what = (
                "closes the connection during the protocol handshake (ApiVersions): not a "
                "Kafka protocol server this client can read, or a listener that wants TLS "
                "or SASL (see security.protocol)"
            )
        return f"it {what} [librdkafka, {self.handshake_failures} times: {line}]"


class ErrorLog:
    """The client's ``error_cb``: keeps its last report. It holds no reference back to
    the client, so the client is never part of a reference cycle: librdkafka aborts the
    process if a client is destroyed on one of its own threads, which is where the
    cyclic garbage collector could otherwise free one (admin results are delivered
    there, running Python code)."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        # "all brokers are down" sums up what the errors before it said better
        if error.code() != KafkaError._ALL_BROKERS_DOWN or self.last is None:
            self.last = error
