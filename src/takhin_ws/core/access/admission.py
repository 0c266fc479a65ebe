"""Whether an upgrade request may become a WebSocket client, and what it asked for (sans-IO).

:meth:`Admission.admit` checks, in this order: the server is accepting, the request is
a WebSocket upgrade wsproto will accept, its ``Origin`` is allowed, it carries a valid
API key or signed token (when either is configured; see :mod:`~takhin_ws.core.access.auth`),
there is room (registered clients plus handshakes
in flight below the limit), and its connect parameters (``channels``, ``since``,
``epoch``, ``format``) are valid and within the token's claim (403 otherwise; a token
client that names no channels gets the default ones its claim allows); it also
settles the client's wire variant (format, and permessage-deflate when offered, see
:mod:`~takhin_ws.wire.websocket.deflate`). A refusal is an
:class:`~takhin_ws.wire.http.HttpError` with the status and message the client is answered
with. Keys are compared in constant time.

The caller counts the admitted request as a handshake in flight in the same
synchronous step as :meth:`~Admission.admit` (no checkpoint between), so concurrent
upgrades can never exceed the limit.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import attrs

from ...config.options import FORMATS
from ...wire.channels import EVENT_STREAMS, STREAMS, parse_channel, parse_offset
from ...wire.http import HttpError, Request
from ...wire.websocket.deflate import Deflate, negotiate
from ...wire.websocket.frames import PLAIN, Variant
from ..metrics.views import is_view
from .auth import ANONYMOUS, Auth, Authenticator, key_matches, www_authenticate
from .tokens import token_verifier

if TYPE_CHECKING:
    from ...config.settings import Settings

__all__ = [
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "Admission",
    "Upgrade",
    "bearer",
    "key_matches",
    "www_authenticate",
]

#: Subprotocol a browser offers to carry its API key: ``bearer.<key>``.
TOKEN_SUBPROTOCOL_PREFIX: Final = "bearer."
#: Subprotocol the server selects when offered (so browsers accept the handshake).
SUBPROTOCOL: Final = "takhin.v1"
#: A ``Sec-WebSocket-Key`` is a random 16-byte value, base64-encoded (RFC 6455 4.1).
WEBSOCKET_KEY_BYTES: Final = 16
#: Longest excerpt of a bad connect parameter quoted in a 400's message.
QUOTE_LENGTH: Final = 40
_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@attrs.frozen
class Upgrade:
    """What an admitted upgrade request asked for."""

    channels: list[str] | None
    since: dict[str, int]
    epoch: str | None
    subprotocol: str | None
    #: How this client receives published messages (format, compression).
    variant: Variant = PLAIN
    #: The accepted permessage-deflate configuration, if any.
    deflate: Deflate | None = None
    #: Bytes of the request head (what follows it are the client's first frames).
    head_size: int = 0
    #: How the client authenticated (and what its token grants).
    auth: Auth = ANONYMOUS

    @property
    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """The handshake answer's headers beyond the protocol's own."""
        if self.deflate is None:
            return []
        return [(b"Sec-WebSocket-Extensions", self.deflate.response().encode())]


class Admission:
    """The upgrade policy of one server (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.authenticator = Authenticator(settings.api_keys, token_verifier(settings))

    def admit(
        self,
        request: Request,
        *,
        accepting: bool,
        occupied: int,
        capacity: int,
        owns_handshake: bool = True,
    ) -> Upgrade:
        """Admit *request* or raise :class:`HttpError`.

        *occupied* is the number of registered clients plus handshakes in flight;
        *capacity* the most the hub takes. *owns_handshake* is False behind ASGI,
        where the server has checked the handshake headers and negotiates
        permessage-deflate itself: neither is done here then (the client's variant is
        uncompressed)."""
        if not accepting:
            raise HttpError(503, "server is shutting down", headers=[("Retry-After", "1")])
        if owns_handshake:
            check_handshake(request)
        if not self.origin_allowed(request):
            raise HttpError(403, "origin not allowed")
        offered = subprotocols(request)
        auth = self.authenticate(request, offered)
        if occupied >= capacity:
            raise HttpError(
                503,
                f"connection limit reached ({capacity} clients)",
                headers=[("Retry-After", str(self.settings.retry_after))],
            )
        channels, since, epoch = connect_params(request)
        limit = self.settings.max_channels
        if channels is not None and len(set(channels)) > limit:
            raise HttpError(400, f"channels: at most {limit} channels per connection")
        views = self.settings.max_views
        if channels is not None and len({c for c in channels if is_view(c)}) > views:
            raise HttpError(400, f"channels: at most {views} metrics views per connection")
        bare = connect_format(request, self.settings.format) == "bare"
        if bare and channels is None:
            channels = ["metrics"]  # a bare client receives nothing else
        permissions = auth.permissions
        if permissions is not None:
            if channels is None:  # the default subscription, as far as the claim goes
                channels = [c for c in STREAMS if permissions.allows(c)]
            refused = sorted({c for c in channels if not permissions.allows(c)})
            if refused:
                raise self.authenticator.forbid(
                    f"channels: not permitted by the token: {', '.join(refused)}"
                )
        extensions = request.header("sec-websocket-extensions") if owns_handshake else None
        deflate = negotiate([extensions] if extensions else [], enabled=self.settings.compression)
        variant = (
            PLAIN  # the common case: one shared value, not one per connection
            if deflate is None and not bare
            else Variant(
                bare=bare,
                window_bits=0 if deflate is None else deflate.window_bits,
                min_size=self.settings.compress_min_size if deflate is not None else 0,
            )
        )
        return Upgrade(
            channels,
            since,
            epoch,
            choose_subprotocol(offered),
            variant,
            deflate,
            request.head_size,
            auth,
        )

    @property
    def keys_required(self) -> bool:
        return self.authenticator.required

    def origin_allowed(self, request: Request) -> bool:
        origin = request.header("origin")
        if origin is None:
            return True  # not a browser
        allowed = self.settings.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        parts = urlsplit(origin)
        if parts.netloc and parts.netloc == request.header("host"):
            return True
        return not allowed and (parts.hostname or "") in _LOCAL_HOSTS

    def authenticate(self, request: Request, offered: list[str]) -> Auth:
        """Who *request* is (header, ``?token=``, ``bearer.<token>`` subprotocols in
        *offered*); raise :class:`HttpError` 401."""
        candidates = [bearer(request), request.param("token")]
        candidates += [
            p[len(TOKEN_SUBPROTOCOL_PREFIX) :]
            for p in offered
            if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)
        ]
        return self.authenticator.authenticate(candidates)


def bearer(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (or a bare key, as 2.9 took)."""
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else value.strip()


def check_handshake(request: Request) -> None:
    """Refuse what RFC 6455 (4.2.1) and wsproto refuse in an opening handshake, with a
    status and a JSON body (the standalone server answers the upgrade itself)."""
    tokens = {t.strip().lower() for t in (request.header("connection") or "").split(",")}
    if "upgrade" not in tokens:
        raise HttpError(400, "a WebSocket upgrade needs 'Connection: Upgrade'")
    if (request.header("upgrade") or "").strip().lower() != "websocket":
        raise HttpError(400, "a WebSocket upgrade needs 'Upgrade: websocket'")
    version = request.header("sec-websocket-version")
    if version != "13":
        raise HttpError(
            426 if version else 400,
            "only WebSocket version 13 is supported",
            headers=[("Sec-WebSocket-Version", "13")],
        )
    if request.http_version != "1.1":
        raise HttpError(400, "a WebSocket upgrade needs HTTP/1.1")
    key = request.header("sec-websocket-key")
    if not key or not request.header("host"):
        raise HttpError(400, "a WebSocket upgrade needs 'Sec-WebSocket-Key' and 'Host'")
    if not _valid_key(key):
        raise HttpError(400, "'Sec-WebSocket-Key' must be 16 bytes in base64 (RFC 6455)")


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == WEBSOCKET_KEY_BYTES
    except binascii.Error:
        return False


def subprotocols(request: Request) -> list[str]:
    value = request.header("sec-websocket-protocol") or ""
    return [p.strip() for p in value.split(",") if p.strip()]


def choose_subprotocol(offered: list[str]) -> str | None:
    """``takhin.v1`` when offered; else the first ``bearer.<key>`` entry (a browser
    that offered only its key fails a handshake that selects none); never a
    subprotocol this server does not speak."""
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    tokens = [p for p in offered if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)]
    return tokens[0] if tokens else None


def connect_format(request: Request, default: str) -> str:
    """``?format=envelope|bare`` (default: the server's ``--format``)."""
    value = request.param("format")
    if value is None:
        return default
    if value not in FORMATS:
        raise HttpError(400, f"format: expected envelope or bare, got {value!r}")
    return value


def _excerpt(text: str) -> str:
    """*text* quoted for an error message, cut to :data:`QUOTE_LENGTH` characters."""
    if len(text) <= QUOTE_LENGTH:
        return repr(text)
    return repr(text[:QUOTE_LENGTH]) + "..."


def connect_params(request: Request) -> tuple[list[str] | None, dict[str, int], str | None]:
    """``?channels=a,b``, ``?since=topics:41,groups:7`` and ``?epoch=``."""
    channels: list[str] | None = None
    raw = request.param("channels")
    if raw is not None:
        try:
            channels = [parse_channel(c) for c in raw.split(",") if c]
        except ValueError as exc:
            raise HttpError(400, f"channels: {exc}") from None
    since: dict[str, int] = {}
    raw_since = request.param("since")
    if raw_since:
        for part in raw_since.split(","):
            stream, sep, offset = part.partition(":")
            try:
                if not sep or stream not in EVENT_STREAMS:
                    raise ValueError("expected <topics|groups>:<offset>[,...]")
                since[stream] = parse_offset(offset)
            except ValueError as exc:
                raise HttpError(400, f"since: {exc}, got {_excerpt(part)}") from None
    return channels, since, request.param("epoch")
