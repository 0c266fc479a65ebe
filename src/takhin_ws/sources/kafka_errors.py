"""Errors and secrets of the ``kafka`` source: which Kafka errors fail a tick, what the
client reports on its own (its error callback and log lines), and which client
properties are secrets (masked in every repr and message)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from confluent_kafka import KafkaError, KafkaException

from ..core.snapshot import MetricsSourceError

__all__ = [
    "FATAL",
    "GONE",
    "SECRET_WORDS",
    "ClientLog",
    "ErrorLog",
    "KafkaSourceError",
    "error_of",
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


class KafkaSourceError(MetricsSourceError):
    """The cluster could not be read: unreachable, refused, too slow."""

    #: Whether the cluster does not speak the protocol as the client does.
    incompatible: bool = False


def is_incompatible(exc: BaseException) -> bool:
    """Whether *exc* says the cluster does not speak the protocol as the client does."""
    return isinstance(exc, KafkaSourceError) and exc.incompatible


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
    """librdkafka's log callback: its lines go to :data:`client_logger` at debug."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        client_logger.debug(fmt, *args)


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
