"""Exceptions: our misuse (local) versus the peer's bad input (remote), as h11 does it."""

from __future__ import annotations

__all__ = [
    "HubClosedError",
    "HubFullError",
    "ListenError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "TakhinWsError",
]


class TakhinWsError(Exception):
    """Base class of every error takhin-ws raises on purpose."""


class ProtocolError(TakhinWsError):
    """A message could not be decoded or encoded.

    ``code`` is one of ``invalid_json``, ``unknown_type``, ``invalid_field`` and
    ``too_large``; ``path`` names the offending field (``$.data.channels[1]``) when
    there is one. The pair is what a client sees in an ``error`` message.
    """

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """Our own code tried to send something the protocol does not allow."""


class HubFullError(TakhinWsError):
    """The hub already holds ``max_clients`` clients."""


class ListenError(TakhinWsError, OSError):
    """The server could not bind its address (in use, not permitted, unknown host).

    An :class:`OSError` too, so ``except OSError`` around ``open_server`` catches it."""


class HubClosedError(TakhinWsError):
    """The hub is closed and takes no more clients or messages."""
