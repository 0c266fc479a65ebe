"""Who a request is: anonymous, an API key or a signed token, and the refusals (sans-IO).

:class:`Authenticator` takes the credentials a request carries (the places an API key
travels: ``Authorization: Bearer``, ``?token=``, a ``bearer.<token>`` subprotocol) and
answers an :class:`Auth`. Every candidate is compared with every API key in constant
time (no early exit); a candidate shaped like a JWT is then verified
(:mod:`~takhin_ws.core.access.tokens`). An API key grants every channel, as before tokens; a
token grants its ``channels`` claim. Without keys and token keys configured everyone
is let in (``none``).

A refusal is an :class:`~takhin_ws.wire.http.HttpError` 401 whose ``reason`` names
what is wrong (``expired``, ``signature``...); the authenticator counts refusals by
reason and admissions by kind, for ``/metrics``.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final, Literal

from attrs import frozen

from ...wire.http import HttpError
from .permissions import Permissions
from .tokens import Grant, TokenError, TokenVerifier, looks_like_token

__all__ = ["ANONYMOUS", "API_KEY", "AUTH_KINDS", "Auth", "Authenticator", "www_authenticate"]

AuthKind = Literal["none", "api_key", "token"]
AUTH_KINDS: Final[tuple[AuthKind, ...]] = ("none", "api_key", "token")
#: Refusal reasons beyond a token's own (:data:`~takhin_ws.core.access.tokens.REFUSAL_REASONS`):
#: a credential that is neither a key nor a token, and a channel outside a claim.
WRONG_KEY: Final = "wrong_key"
FORBIDDEN: Final = "forbidden"


@frozen
class Auth:
    """How a connection authenticated, and what its token grants (if any)."""

    kind: AuthKind
    grant: Grant | None = None

    @property
    def permissions(self) -> Permissions | None:
        """The channel patterns that restrict this connection; ``None``: every channel
        (no token, or a claim that grants everything: the unfiltered path)."""
        grant = self.grant
        if grant is None or grant.permissions.everything:
            return None
        return grant.permissions


ANONYMOUS: Final = Auth("none")
API_KEY: Final = Auth("api_key")


def www_authenticate() -> list[tuple[str, str]]:
    return [("WWW-Authenticate", 'Bearer realm="takhin-ws"')]


def key_matches(keys: Sequence[bytes], candidate: str | None) -> bool:
    """Constant-time comparison against every key (no early exit)."""
    if not candidate:
        return False
    given = candidate.encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(key, given)
    return ok


class Authenticator:
    """API keys and the token verifier of one server (see the module docstring)."""

    def __init__(self, api_keys: Iterable[str], verifier: TokenVerifier | None) -> None:
        self._keys = [k.encode() for k in api_keys]
        self.verifier = verifier
        #: Refusals by reason (401s, forbidden channels, refused refreshes).
        self.refusals: Counter[str] = Counter()
        #: WebSocket connections registered, by :data:`AUTH_KINDS` (counted by the server).
        self.admitted: Counter[str] = Counter()

    @staticmethod
    def census(kinds: Iterable[str]) -> dict[str, int]:
        """How many of *kinds* (the connected clients') there are of each kind."""
        counts = Counter(kinds)
        return {kind: counts[kind] for kind in AUTH_KINDS}

    @property
    def required(self) -> bool:
        return bool(self._keys) or self.verifier is not None

    def authenticate(self, candidates: Iterable[str | None]) -> Auth:
        """The :class:`Auth` of a request carrying *candidates*; raise ``HttpError`` 401."""
        given = [c for c in candidates if c]
        if not self.required:
            return ANONYMOUS
        keyed = False
        for candidate in given:
            keyed |= key_matches(self._keys, candidate)
        if keyed:
            return API_KEY
        failure: TokenError | None = None
        if self.verifier is not None:
            for candidate in given:
                if not looks_like_token(candidate):
                    continue
                try:
                    return Auth("token", self.verifier.verify(candidate))
                except TokenError as exc:
                    failure = failure or exc
        if failure is not None:
            raise self.refuse(failure.reason, failure.message)
        what = "API key" if self.verifier is None else "API key or token"
        if given:
            raise self.refuse(WRONG_KEY, f"missing or wrong {what}")
        raise self.refuse("missing", f"missing or wrong {what}")

    def refresh(self, token: str) -> Grant:
        """The grant of a refreshed *token*; raise :class:`TokenError` (counted)."""
        if self.verifier is None or not looks_like_token(token):
            self.refusals["malformed"] += 1
            raise TokenError("malformed", "the token is malformed")
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            self.refusals[exc.reason] += 1
            raise

    def refuse(self, reason: str, message: str) -> HttpError:
        """A counted 401 refusal."""
        self.refusals[reason] += 1
        return HttpError(401, message, headers=www_authenticate(), details={"reason": reason})

    def forbid(self, message: str) -> HttpError:
        """A counted 403 refusal (a channel outside the claim)."""
        self.refusals[FORBIDDEN] += 1
        return HttpError(403, message, details={"reason": FORBIDDEN})
