"""``Idempotency-Key``: a retried ``POST /api/events`` is answered, not published again
(sans-IO).

A publisher that times out and retries a batch would publish it twice. With an
``Idempotency-Key`` header, the first request's answer is remembered (for
``--idempotency-ttl`` seconds, at most ``--idempotency-keys`` of them, the oldest
forgotten first) and a retry with the same key and the same body gets that answer
again. A retry while the first is still being published is told so (409, try again);
the same key with another body is a mistake (422). Keys are per publish key, so two
publishers cannot collide. Only an accepted batch is remembered: after a refusal
nothing was published and the key may be used again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from attrs import frozen

from ..wire.http import HttpError

__all__ = ["MAX_KEY_LENGTH", "Done", "IdempotencyKeys", "check_key"]

#: Longest ``Idempotency-Key`` accepted (visible ASCII, as the IETF draft has it).
MAX_KEY_LENGTH: Final = 255
#: ``Retry-After`` seconds of the 409 answered while the first request is in progress.
RETRY_IN_PROGRESS: Final = 1


@frozen
class Done:
    """The answer the first request with a key got: status and body."""

    status: int
    body: bytes


@frozen
class _Entry:
    fingerprint: bytes
    since: float
    done: Done | None  # None while the first request is being published


def check_key(key: str) -> str:
    """*key* if it is 1 to :data:`MAX_KEY_LENGTH` visible ASCII characters, else 400."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in key):
        raise HttpError(
            400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
        )
    return key


class IdempotencyKeys:
    """The answers of recent requests by (scope, key), bounded by *ttl* seconds and
    *capacity* entries (0: remember nothing)."""

    __slots__ = ("_clock", "_entries", "capacity", "ttl")

    def __init__(
        self, *, ttl: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, scope: str, key: str, body: bytes) -> Done | None:
        """The remembered answer of a request with *key* and this *body*, or ``None``
        (then this request is the first: publish, then :meth:`finish` or
        :meth:`abandon`). Raises :class:`HttpError` 409 while the first is still in
        progress, 422 for another body."""
        now = self._clock()
        self._expire(now)
        fingerprint = hashlib.sha256(body).digest()
        entry = self._entries.get((scope, key))
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise HttpError(
                    422, "this Idempotency-Key was used with another body: use a new key"
                )
            if entry.done is None:
                raise HttpError(
                    409,
                    "a request with this Idempotency-Key is still being published",
                    headers=[("Retry-After", str(RETRY_IN_PROGRESS))],
                )
            return entry.done
        if self.capacity:
            self._entries[scope, key] = _Entry(fingerprint, now, None)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return None

    def finish(self, scope: str, key: str, done: Done) -> None:
        """The first request with *key* was answered *done*: remember it."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.done is None:  # kept for the TTL from now on
            del self._entries[scope, key]
            self._entries[scope, key] = _Entry(entry.fingerprint, self._clock(), done)

    def abandon(self, scope: str, key: str) -> None:
        """The first request with *key* published nothing (refused, failed): forget it."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.done is None:
            del self._entries[scope, key]

    def _expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self.ttl
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.since >= horizon:
                break
            entries.popitem(last=False)
