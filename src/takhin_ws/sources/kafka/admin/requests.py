"""The client of the ``kafka`` source and how it asks: one confluent-kafka
``AdminClient`` (librdkafka), and the machinery every request of a tick shares.

:class:`AdminRequests` owns the client and its callbacks (its last error report, its
log lines: see :mod:`takhin_ws.sources.kafka.errors`), and asks in rounds: every key
(a partition's offset, a group's description...) is requested at once, the answers
are waited for within the deadline, the keys that answered with an error are asked
again after :data:`RETRY_PAUSE` while the deadline allows. An answer is whole or the
request fails with a :class:`KafkaSourceError` that names the bootstrap, the request
and what librdkafka reported, secrets masked; a broker that lacks a request, or that
broke off every handshake while it never answered, gives a
:class:`KafkaIncompatibleError` that says so first.
:class:`~takhin_ws.sources.kafka.admin.client.KafkaAdmin` builds a tick's requests on it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ..errors import (
    FATAL,
    GONE,
    HANDSHAKE_FAILURES,
    INCOMPATIBLE,
    ClientLog,
    ErrorLog,
    KafkaIncompatibleError,
    KafkaSourceError,
    error_of,
    incompatibility,
    is_secret,
)

__all__ = ["RETRY_PAUSE", "AdminRequests", "Batch", "Key", "logger", "one"]

logger: Final = logging.getLogger("takhin_ws.metrics")
#: Seconds between two askings of a partition or group that answered with an error.
RETRY_PAUSE: Final = 0.1
#: Shortest request timeout handed to librdkafka (it refuses 0).
_MIN_REQUEST_TIMEOUT: Final = 0.05
#: Seconds a failed request waits for the client's own report of the cause.
_CAUSE_WAIT: Final = 0.5

_K = TypeVar("_K")
#: What one asking is about: ("end" | "start", (topic, partition)) or
#: ("describe" | "offsets", group).
Key = tuple[str, Any]
#: One request in flight: its future, the keys it asks, and how its result becomes
#: (key, answer or error) pairs.
Batch = tuple[concurrent.futures.Future[Any], list[Key], Callable[[Any], Iterable[tuple[Key, Any]]]]


def one(key: Key, future: concurrent.futures.Future[Any]) -> Batch:
    """The batch of a request with one future per key (librdkafka's public API)."""
    return (future, [key], lambda result: ((key, result),))


def _name(key: Key) -> str:
    subject = key[1]
    if isinstance(subject, tuple):
        return f"{subject[0]}[{subject[1]}]"
    return f"group {subject}"


class AdminRequests:
    """One ``AdminClient`` for *bootstrap* with the client properties *config*; every
    method blocks (up to its *deadline*, a :func:`time.monotonic` time).

    The client is only ever reached through ``self._admin`` (never kept in a local
    that a traceback could hold on to), so :meth:`close` drops the last reference in
    the calling thread, or a call still running drops it in its own thread.
    """

    def __init__(self, bootstrap: str, config: Iterable[tuple[str, str]] = ()) -> None:
        self.bootstrap = bootstrap
        self.config = tuple(config)
        self._errors = ErrorLog()
        self._log = ClientLog()
        #: Whether the cluster ever answered this client (its handshake works then).
        self._answered = False
        self._polling = threading.Lock()
        #: When the tick's caller stops waiting (monotonic): waiting for the client's
        #: report of a cause never goes past it.
        self.hard_deadline = math.inf
        conf: dict[str, Any] = dict(self.config)
        conf.update({"bootstrap.servers": bootstrap, "error_cb": self._errors, "logger": self._log})
        try:
            self._admin: AdminClient | None = AdminClient(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            error = error_of(exc)
            reason = error.str() if error is not None else str(exc)
            raise ValueError(f"kafka client config refused: {self._redact(reason)}") from None

    def close(self) -> None:
        """Destroy the client (librdkafka joins its threads: blocks briefly)."""
        self._admin = None

    def succeeded(self) -> None:
        """A tick went through: forget the client's last complaint."""
        self._errors.last = None

    @property
    def _client(self) -> AdminClient:
        if self._admin is None:
            raise KafkaSourceError("kafka source is closed")
        return self._admin

    def _serve(self, wait: float = 0.0) -> None:
        """Serve the client's error and log callbacks (waiting up to *wait* s).

        One thread at a time: two threads polling one client at once can crash
        librdkafka. A thread that finds another serving waits for it up to *wait* s
        (what it waits for may be what that one is serving), else leaves it to it.
        """
        if not self._polling.acquire(timeout=wait if wait > 0 else -1, blocking=wait > 0):
            return
        try:
            if self._admin is not None:
                self._admin.poll(wait)
        finally:
            self._polling.release()

    def _settle(self) -> None:
        """Serve what the client has queued so far, after any other thread's serving
        (waited for up to :data:`_CAUSE_WAIT` s): what decides between a broker that is
        down and one that is incompatible (the handshakes counted) must include the
        lines another thread was serving at that moment."""
        if not self._polling.acquire(timeout=_CAUSE_WAIT):
            return
        try:
            if self._admin is not None:
                self._admin.poll(0)
        finally:
            self._polling.release()

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), _MIN_REQUEST_TIMEOUT)

    # --- asking, waiting and errors ---

    def ask(
        self,
        keys: list[Key],
        request: Callable[[list[Key], float], list[Batch]],
        deadline: float,
        what: str,
    ) -> dict[Key, Any]:
        """The answer to every key (``None`` for a partition or group that is gone),
        asking again those that failed, until the deadline: whole, or an error.
        *request* asks for some keys and returns its :data:`Batch` es."""
        out: dict[Key, Any] = {}
        pending = keys
        while pending:
            try:
                batches = request(pending, self._remaining(deadline))
            except KafkaException as exc:
                raise self._failure(what, exc) from None
            failed: dict[Key, BaseException] = {}
            for key, answer in self._answers(batches, deadline, what):
                if isinstance(answer, KafkaError):
                    answer = KafkaException(answer)
                if not isinstance(answer, BaseException):
                    out[key] = answer
                elif self._gone(answer, what):
                    out[key] = None
                else:
                    failed[key] = answer
            if failed:
                self._pause_or_fail(deadline, what, failed)
            pending = [key for key in pending if key in failed]
        return out

    def _answers(
        self, batches: list[Batch], deadline: float, what: str
    ) -> Iterator[tuple[Key, Any]]:
        """(key, answer or error) for every key of every batch, within the deadline."""
        for future, keys, unpack in batches:
            try:
                result = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                raise self._error(f"{what} timed out{self.cause(_CAUSE_WAIT)}", None) from None
            except Exception as exc:  # the whole request's error (KafkaException...)
                for key in keys:
                    yield key, exc
                continue
            answered = 0
            for key, answer in unpack(result):
                answered += 1
                yield key, answer
            if answered < len(keys):  # a key the answer forgot: not whole
                raise self._error(f"{what}: {len(keys) - answered} keys without an answer", None)

    def _pause_or_fail(
        self, deadline: float, what: str, failed: Mapping[Key, BaseException]
    ) -> None:
        """Wait a little before asking *failed* again, or fail if the deadline is near."""
        (key, first), *_ = failed.items()
        reason = f"{_name(key)}: {self._detail(first)}"
        if deadline - time.monotonic() < 2 * RETRY_PAUSE:
            many = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise self._error(
                f"{what} incomplete at the deadline: {reason}{many}{self.cause()}", None
            )
        logger.debug("kafka %s: %s: %d asked again (%s)", self.bootstrap, what, len(failed), reason)
        time.sleep(RETRY_PAUSE)

    def _wait(
        self, futures: Mapping[_K, concurrent.futures.Future[Any]], deadline: float, what: str
    ) -> dict[_K, Any]:
        """The result (or exception) of every future, all within the deadline.

        One by one: ``concurrent.futures.wait`` on thousands of futures costs far more.
        """
        out: dict[_K, Any] = {}
        for key, future in futures.items():
            try:
                out[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                raise self._error(f"{what} timed out{self.cause(_CAUSE_WAIT)}", None) from None
            except Exception as exc:  # this key's error (KafkaException...)
                out[key] = exc
        return out

    def _gone(self, exc: BaseException, what: str) -> bool:
        """Whether *exc* says the partition or group went away; raises if it is about
        the cluster (unreachable, refused) rather than one of them."""
        error = error_of(exc)
        if error is None or error.code() in FATAL or error.code() in INCOMPATIBLE:
            raise self._failure(what, exc)
        return error.code() in GONE

    def _detail(self, exc: BaseException | KafkaError | str) -> str:
        if isinstance(exc, str):
            return exc
        error = exc if isinstance(exc, KafkaError) else error_of(exc)
        return error.str() if error is not None else f"{type(exc).__name__}: {exc}"

    def _failure(self, what: str, exc: BaseException | KafkaError | str) -> KafkaSourceError:
        """The error for a failed request (in a worker thread)."""
        error = exc if isinstance(exc, KafkaError) else None
        if isinstance(exc, BaseException):
            error = error_of(exc)
        detail = self._detail(exc)
        return self._error(f"{what} failed: {detail}{self.cause(_CAUSE_WAIT)}", error)

    def inconclusive(self) -> bool:
        """Whether the cluster never answered this client and the handshakes seen do
        not say yet whether it is incompatible (fewer than needed): asking again, within
        the deadline, tells a broker that is down from one that breaks off."""
        if self._answered:
            return False
        self._settle()
        return self._log.handshake_failures < HANDSHAKE_FAILURES

    def _error(self, text: str, error: KafkaError | None) -> KafkaSourceError:
        """``kafka BOOTSTRAP: text``, secrets masked; an incompatible broker says so
        first (a request it lacks, or handshakes it broke off while it never answered)."""
        reason = incompatibility(error)
        if reason is None and not self._answered:
            self._settle()
            reason = self._log.handshake()
        if reason is not None:
            return KafkaIncompatibleError(
                self._redact(f"kafka {self.bootstrap}: incompatible broker: {reason}; {text}")
            )
        return KafkaSourceError(self._redact(f"kafka {self.bootstrap}: {text}"))

    def cause(self, wait: float = 0.0) -> str:
        """What the client last reported about the cluster (refused login...), if any.

        In a worker thread, *wait* seconds may be spent for the report to come; on
        the event loop, 0.
        """
        wait = min(wait, self.hard_deadline - time.monotonic())
        self._serve(wait if self._errors.last is None else 0.0)
        error = self._errors.last
        return "" if error is None else self._redact(f" (client: {error.str()})")

    def _redact(self, text: str) -> str:
        for key, value in self.config:
            if value and is_secret(key):
                text = text.replace(value, "***")
        return text
