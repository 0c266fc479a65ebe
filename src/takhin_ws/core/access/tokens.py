"""Signed connection tokens (JWT, with PyJWT): verification and what a token grants (sans-IO).

:class:`TokenVerifier` holds the keys a server accepts: an HS256 shared secret and/or
RS256/ES256 public keys (PEM files or a JWKS file; several for key rotation). Each key
has exactly one algorithm, fixed when it is loaded, never read from a token: a token
whose ``alg`` no configured key has (``none`` included) is refused, and an RSA or EC
public key is never used as an HMAC secret (algorithm confusion). A token naming a
``kid`` is checked against the keys with that id; one without, against every key of
its algorithm (a rotation serves old and new tokens alike).

A valid token has ``exp``; ``nbf`` and ``iat`` are honoured with ``leeway`` seconds;
``aud`` and ``iss`` are checked when configured. It becomes a :class:`Grant`: the
subject, the expiry, the compiled ``channels`` claim (:class:`Permissions`) and
whether it may publish (``publish: true``). A refusal is a :class:`TokenError` whose
``reason`` is a short code (``expired``, ``signature``...) and whose message says what
is wrong without telling which part of a signature failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt
from attrs import frozen
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .permissions import ClaimError, Permissions

if TYPE_CHECKING:
    from ...config.settings import Settings

__all__ = [
    "ALGORITHMS",
    "REFUSAL_REASONS",
    "Grant",
    "TokenError",
    "TokenVerifier",
    "looks_like_token",
    "token_verifier",
]

#: The algorithms a key can have (HS256: the shared secret; RS256, ES256: public keys).
ALGORITHMS: Final = ("HS256", "RS256", "ES256")
#: The claim a token's channel patterns travel in, and the one that allows publishing.
CHANNELS_CLAIM: Final = "channels"
PUBLISH_CLAIM: Final = "publish"

#: Every ``reason`` a refusal can have (the ``/metrics`` label values).
REFUSAL_REASONS: Final = (
    "missing",
    "malformed",
    "algorithm",
    "signature",
    "expired",
    "not_yet_valid",
    "audience",
    "issuer",
    "claims",
)


class TokenError(Exception):
    """A token that grants nothing: *reason* (one of :data:`REFUSAL_REASONS`), *message*."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@frozen
class Grant:
    """What a verified token grants one connection."""

    #: The token's ``sub`` (a refresh must carry the same one).
    subject: str | None
    #: Unix seconds (``exp``).
    expires_at: int
    permissions: Permissions
    #: ``publish: true``: ``POST /api/events`` on the granted channels.
    publish: bool = False


@frozen
class _Key:
    algorithm: str
    key: Any
    kid: str | None = None


def looks_like_token(candidate: str) -> bool:
    """Whether *candidate* has the shape of a JWT (three dot-separated parts)."""
    return candidate.count(".") == 2


def _algorithm_of(key: Any, where: str) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise ValueError(f"{where}: an EC key must be on P-256 for ES256")
        return "ES256"
    raise ValueError(f"{where}: expected an RSA or EC (P-256) public key")


def load_public_keys(path: str) -> list[_Key]:
    """The keys of one file: a PEM public key, or a JWKS (``{"keys": [...]}``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.lstrip().startswith(b"{"):
        return _jwks_keys(data, path)
    try:
        key = load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"{path}: not a PEM public key nor a JWKS file") from None
    return [_Key(_algorithm_of(key, path), key)]


def _jwks_keys(data: bytes, path: str) -> list[_Key]:
    try:
        keys = jwt.PyJWKSet.from_json(data.decode()).keys
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable JWKS: {exc}") from None
    out = []
    for jwk in keys:
        algorithm = _algorithm_of(jwk.key, path)
        if jwk.algorithm_name != algorithm:  # the key's declared "alg"
            raise ValueError(
                f"{path}: key {jwk.key_id!r}: alg {jwk.algorithm_name} is not accepted"
            )
        out.append(_Key(algorithm, jwk.key, jwk.key_id))
    return out


class TokenVerifier:
    """The keys one server accepts, and the checks (see the module docstring)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_keys: Sequence[str] = (),
        leeway: float = 0.0,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        keys = [] if secret is None else [_Key("HS256", secret.encode())]
        for path in public_keys:
            keys.extend(load_public_keys(path))
        if not keys:
            raise ValueError("no token key: give a secret or a public key")
        self._keys = keys
        self.algorithms = frozenset(k.algorithm for k in keys)
        self.leeway = leeway
        self.audience = audience
        self.issuer = issuer

    def verify(self, token: str) -> Grant:
        """The grant of *token* now (PyJWT reads the wall clock), or raise :class:`TokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenError("malformed", "the token is malformed") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise TokenError("algorithm", f"token algorithm {algorithm!r} is not accepted")
        candidates = [k for k in self._keys if k.algorithm == algorithm]
        kid = header.get("kid")
        if kid is not None and any(k.kid is not None for k in candidates):
            candidates = [k for k in candidates if k.kid == kid]
        for key in candidates:
            try:
                claims = self._decode(token, key)
            except jwt.InvalidSignatureError:
                continue  # another key of the rotation may have signed it
            except jwt.PyJWTError as exc:
                raise _refusal(exc) from None
            return _grant(claims)
        raise TokenError("signature", "the token's signature is not valid")

    def _decode(self, token: str, key: _Key) -> dict[str, Any]:
        options: jwt.types.Options = {
            "require": ["exp"],
            "verify_aud": self.audience is not None,
        }
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options=options,
        )
        return claims


def _refusal(exc: jwt.PyJWTError) -> TokenError:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TokenError("expired", "token expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenError("not_yet_valid", "token not yet valid")
    if isinstance(exc, jwt.InvalidAudienceError):
        return TokenError("audience", "token audience not accepted")
    if isinstance(exc, jwt.InvalidIssuerError):
        return TokenError("issuer", "token issuer not accepted")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenError("claims", f"the token has no {exc.claim!r} claim")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return TokenError("algorithm", "token algorithm is not accepted")
    if isinstance(exc, jwt.DecodeError):
        return TokenError("malformed", "the token is malformed")
    return TokenError("claims", f"the token's claims are not valid: {exc}")  # sub, iat, jti


def _grant(claims: Mapping[str, Any]) -> Grant:
    subject = claims.get("sub")
    if subject is not None and not isinstance(subject, str):
        raise TokenError("claims", "the token's 'sub' claim must be a string")
    expires = claims["exp"]
    if type(expires) is not int:  # PyJWT also takes a numeric string
        raise TokenError("claims", "the token's 'exp' claim must be an integer")
    channels = claims.get(CHANNELS_CLAIM)
    if not isinstance(channels, list):
        raise TokenError(
            "claims", f"the token needs a {CHANNELS_CLAIM!r} claim: a list of patterns"
        )
    try:
        permissions = Permissions(channels)
    except ClaimError as exc:
        raise TokenError("claims", str(exc)) from None
    publish = claims.get(PUBLISH_CLAIM, False)
    if not isinstance(publish, bool):
        raise TokenError("claims", f"the token's {PUBLISH_CLAIM!r} claim must be true or false")
    return Grant(subject, expires, permissions, publish)


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The verifier *settings* configure (``None`` without a token key); raise
    ``ValueError`` naming a key file that cannot be used."""
    if settings.token_secret is None and not settings.token_public_keys:
        return None
    return TokenVerifier(
        secret=settings.token_secret,
        public_keys=settings.token_public_keys,
        leeway=settings.token_leeway,
        audience=settings.token_audience,
        issuer=settings.token_issuer,
    )
