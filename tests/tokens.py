"""Minting signed tokens for the tests (PyJWT, as a client's identity provider would)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: The HS256 secret the tests' servers accept (32 bytes: RFC 7518's minimum).
SECRET = "test-secret-0123456789abcdef-xyz"
#: How long a minted token lives unless told otherwise (seconds).
LIFETIME = 300


def claims(
    channels: list[str] | None = None, *, ttl: float = LIFETIME, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": "ann", "exp": int(time.time() + ttl)}
    if channels is not None:
        out["channels"] = channels
    out.update(extra)
    return out


def mint(
    channels: list[str] | None = None,
    *,
    ttl: float = LIFETIME,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    """A token for *channels*, expiring in *ttl* seconds, signed with *key*."""
    return jwt.encode(claims(channels, ttl=ttl, **extra), key, algorithm=algorithm, headers=headers)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_pem(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(public_pem(key))
    return str(path)
