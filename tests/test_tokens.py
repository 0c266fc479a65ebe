"""Signed tokens without sockets: verification (keys, rotation, claims, refusals), the
channel patterns of a claim, and the settings that configure them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from takhin_ws import Settings
from takhin_ws.config.checks import SettingsError
from takhin_ws.core.access.auth import API_KEY, Authenticator
from takhin_ws.core.access.permissions import ClaimError, Permissions
from takhin_ws.core.access.tokens import TokenError, TokenVerifier, token_verifier
from takhin_ws.wire.http import HttpError
from tokens import SECRET, claims, ec_key, mint, public_pem, rsa_key, write_pem


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[object, object]:
    return rsa_key(), rsa_key()


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    return info.value.reason


# --- HS256 ---


def test_a_valid_token_grants_its_claim() -> None:
    verifier = TokenVerifier(secret=SECRET)
    grant = verifier.verify(mint(["metrics", "topic:orders.*"], publish=True))
    assert grant.subject == "ann"
    assert grant.publish is True
    assert grant.permissions == Permissions(["topic:orders.*", "metrics"])
    assert grant.expires_at > time.time()


def _in(seconds: int) -> int:
    return int(time.time()) + seconds


# each case is made when the test runs (claims made at collection expire in a long run)
@pytest.mark.parametrize(
    ("make_claims", "reason"),
    [
        (lambda: claims(["metrics"], ttl=-60), "expired"),
        (lambda: claims(["metrics"], nbf=_in(600)), "not_yet_valid"),
        (lambda: claims(["metrics"], iat=_in(600)), "not_yet_valid"),
        (lambda: {"sub": "ann", "channels": ["metrics"]}, "claims"),
        (lambda: claims(None), "claims"),
        (lambda: claims(["metrics"], publish="yes"), "claims"),
        (lambda: claims(["no such channel"]), "claims"),
        (lambda: claims(["metrics"], sub=7), "claims"),
    ],
)
def test_claims_that_grant_nothing(
    make_claims: Callable[[], dict[str, object]], reason: str
) -> None:
    token = jwt.encode(make_claims(), SECRET, algorithm="HS256")
    assert refusal(TokenVerifier(secret=SECRET), token) == reason


def test_leeway_forgives_small_clock_skew() -> None:
    token = mint(["metrics"], nbf=int(time.time()) + 3)
    assert refusal(TokenVerifier(secret=SECRET), token) == "not_yet_valid"
    assert TokenVerifier(secret=SECRET, leeway=10).verify(token).subject == "ann"


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(secret=SECRET, audience="takhin", issuer="https://id.example")
    good = mint(["metrics"], aud="takhin", iss="https://id.example")
    assert verifier.verify(good).subject == "ann"
    assert refusal(verifier, mint(["metrics"], aud="other", iss="https://id.example")) == "audience"
    assert refusal(verifier, mint(["metrics"], aud="takhin", iss="https://evil")) == "issuer"
    assert refusal(verifier, mint(["metrics"], iss="https://id.example")) == "claims"  # no aud
    # unconfigured: a token's aud is not held against it
    assert TokenVerifier(secret=SECRET).verify(good).subject == "ann"


def test_a_wrong_signature_says_signature_and_nothing_more() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = mint(["metrics"], key="another-secret-of-32-bytes-or-more!")
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert (info.value.reason, info.value.message) == (
        "signature",
        "the token's signature is not valid",
    )
    assert refusal(verifier, "not.a.token") == "malformed"


def _unsigned(payload: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_is_refused() -> None:
    verifier = TokenVerifier(secret=SECRET)
    assert refusal(verifier, _unsigned(claims(["*"]))) == "algorithm"
    assert refusal(verifier, jwt.encode(claims(["*"]), "", algorithm="none")) == "algorithm"


def test_algorithm_confusion_is_refused(tmp_path: Path, rsa_pair: tuple[object, object]) -> None:
    """An HS256 token whose secret is the server's RSA public key (the classic attack)."""
    private, _ = rsa_pair
    pem = public_pem(private)  # type: ignore[arg-type]
    path = write_pem(tmp_path / "key.pem", private)  # type: ignore[arg-type]
    forged = jwt.api_jws.PyJWS()  # PyJWT refuses to sign with a PEM as HMAC secret: do it raw
    forged._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    token = forged.encode(
        json.dumps(claims(["*"])).encode(), pem, algorithm="HS256", headers={"typ": "JWT"}
    )
    # RS256 only: HS256 is not an algorithm of any key
    assert refusal(TokenVerifier(public_keys=[path]), token) == "algorithm"
    # a secret too: HS256 is checked with the secret, never with the public key
    assert refusal(TokenVerifier(secret=SECRET, public_keys=[path]), token) == "signature"


# --- public keys ---


def test_rotation_with_two_public_keys(tmp_path: Path, rsa_pair: tuple[object, object]) -> None:
    old, new = rsa_pair
    paths = [write_pem(tmp_path / f"{i}.pem", k) for i, k in enumerate((old, new))]  # type: ignore[arg-type]
    verifier = TokenVerifier(public_keys=paths)
    for key in (old, new):
        assert verifier.verify(mint(["metrics"], key=key, algorithm="RS256")).subject == "ann"
    retired = TokenVerifier(public_keys=paths[1:])
    assert refusal(retired, mint(["metrics"], key=old, algorithm="RS256")) == "signature"


def test_es256_and_a_jwks_file_with_key_ids(
    tmp_path: Path, rsa_pair: tuple[object, object]
) -> None:
    private = ec_key()
    rsa_private, _ = rsa_pair
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key())), "kid": "ec1"},
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_private.public_key())),  # type: ignore[attr-defined]
                "kid": "rsa1",
            },
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = TokenVerifier(public_keys=[str(path)])
    assert verifier.algorithms == {"ES256", "RS256"}
    token = mint(["metrics"], key=private, algorithm="ES256", headers={"kid": "ec1"})
    assert verifier.verify(token).subject == "ann"
    other = mint(["metrics"], key=private, algorithm="ES256", headers={"kid": "rsa1"})
    assert refusal(verifier, other) == "signature"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a key", "not a PEM public key nor a JWKS file"),
        (b'{"keys": []}', "not a usable JWKS"),
    ],
)
def test_unusable_key_files_are_named(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        TokenVerifier(public_keys=[str(path)])
    with pytest.raises(ValueError, match="cannot read"):
        TokenVerifier(public_keys=[str(tmp_path / "missing.pem")])


# --- the authenticator: keys beside tokens ---


def test_api_keys_keep_working_beside_tokens() -> None:
    auth = Authenticator(["k1"], TokenVerifier(secret=SECRET))
    assert auth.authenticate([None, "k1"]) == API_KEY
    token = auth.authenticate(["junk", mint(["metrics"])])
    assert token.kind == "token"
    assert token.permissions == Permissions(["metrics"])
    assert auth.authenticate([mint(["*"])]).permissions is None  # everything: unfiltered
    with pytest.raises(HttpError) as info:
        auth.authenticate([mint(["metrics"], ttl=-60)])
    assert (info.value.status, info.value.details["reason"], info.value.message) == (
        401,
        "expired",
        "token expired",
    )
    with pytest.raises(HttpError) as info:
        auth.authenticate([])
    assert info.value.details["reason"] == "missing"
    assert auth.refusals == {"expired": 1, "missing": 1}


# --- patterns ---


def test_patterns_grant_topics_groups_and_views() -> None:
    p = Permissions(["metrics", "topic:orders.*", "group:billing-*"])
    assert p.allows("metrics")
    assert p.allows("metrics:lean")
    assert p.allows("topic:orders.eu")
    assert not p.allows("topic:payments")
    assert p.allows("topics")
    assert p.allows("groups")
    assert p.allows("metrics:topic:orders.eu")
    assert not p.allows("metrics:topic:payments")
    assert p.allows("metrics:group:billing-1")
    assert not p.allows("metrics:group:ops")
    assert p.sees("topic:orders.x")
    assert not p.sees("topics")
    assert not p.sees("group:ops")
    assert not p.everything
    only_topics = Permissions(["topic:a"])
    assert not only_topics.allows("groups")
    assert not only_topics.allows("metrics")
    assert not only_topics.allows("metrics:topic:a")  # a view needs metrics
    assert Permissions(["*"]).everything
    assert Permissions(["metrics", "topics", "groups"]).everything


def test_star_is_the_only_wildcard() -> None:
    p = Permissions(["topic:a.?", "topic:b[0-9]"])
    assert p.sees_topic("a.?")
    assert not p.sees_topic("a.x")
    assert p.sees_topic("b[0-9]")
    assert not p.sees_topic("b1")
    with pytest.raises(ClaimError):
        Permissions(["topic: spaced"])
    with pytest.raises(ClaimError):
        Permissions([7])  # type: ignore[list-item]


@given(st.text(alphabet="ab.-", min_size=1, max_size=6), st.text(alphabet="ab.-", max_size=6))
def test_a_prefix_pattern_matches_exactly_the_names_it_starts(prefix: str, rest: str) -> None:
    p = Permissions([f"topic:{prefix}*"])
    assert p.sees_topic(prefix + rest)
    other = "x" + prefix + rest
    assert not p.sees_topic(other)


# --- settings ---


def test_the_secret_may_come_from_the_environment() -> None:
    env = {"TAKHIN_WS_TOKEN_SECRET": "env:MY_SECRET", "MY_SECRET": SECRET}
    assert Settings.from_env(env).token_secret == SECRET
    with pytest.raises(SettingsError, match="MY_SECRET"):
        Settings.from_env({"TAKHIN_WS_TOKEN_SECRET": "env:MY_SECRET"})
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        Settings(token_secret="short")
    assert "test-secret" not in repr(Settings(token_secret=SECRET))


def test_no_token_settings_no_verifier() -> None:
    assert token_verifier(Settings()) is None
    verifier = token_verifier(Settings(token_secret=SECRET, token_leeway=2, token_issuer="i"))
    assert verifier is not None
    assert (verifier.leeway, verifier.issuer, verifier.audience) == (2, "i", None)
