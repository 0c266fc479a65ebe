"""The examples of docs/tokens.md, run: the tokens they mint (Python, openssl) are
accepted by a server, the rotation's keys both verify, the claim example is a claim."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import orjson

from docs_examples import block, clean_env, commands
from takhin_ws.config.cli import parse_args
from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.access.tokens import TokenVerifier
from tokens import SECRET, rsa_key, write_pem

PAGE = "docs/tokens.md"


def _verify(token: str) -> Permissions:
    return TokenVerifier(secret=SECRET).verify(token.strip()).permissions


def test_the_python_example_mints_a_token_the_server_accepts(tmp_path: Path) -> None:
    script = tmp_path / "mint.py"
    script.write_text(block(PAGE, "python", "jwt.encode("))
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(TOKEN_SECRET=SECRET),
        check=True,
    )
    assert _verify(result.stdout) == Permissions(["metrics", "topic:orders.*", "group:billing-*"])


def test_the_openssl_example_mints_a_token_the_server_accepts() -> None:
    result = subprocess.run(
        ["bash", "-euc", block(PAGE, "sh", "openssl dgst -sha256 -hmac")],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(TOKEN_SECRET=SECRET),
        check=True,
    )
    assert _verify(result.stdout) == Permissions(["metrics", "topic:orders.*"])


def test_the_rotation_example_keys_verify_old_and_new_tokens(tmp_path: Path) -> None:
    lines = commands(block(PAGE, "sh", "--token-public-key old-public.pem"))
    openssl = [c for c in lines if c.startswith("openssl ")]
    assert len(openssl) == 2
    for command in openssl:
        subprocess.run(command, shell=True, cwd=tmp_path, check=True, timeout=60)
    old = rsa_key()
    write_pem(tmp_path / "old-public.pem", old)
    (serve,) = [c for c in lines if "takhin_ws" in c]
    flags = serve.split("takhin_ws", 1)[1].split()
    settings = parse_args([f if f.startswith("--") else str(tmp_path / f) for f in flags], {})
    verifier = TokenVerifier(public_keys=settings.token_public_keys)
    new = (tmp_path / "new-private.pem").read_bytes()
    for key in (old, new):
        token = jwt.encode(
            {"exp": int(time.time()) + 60, "channels": ["*"]}, key, algorithm="RS256"
        )
        assert verifier.verify(token).permissions.everything


def test_the_claim_example_is_a_claim() -> None:
    claim = orjson.loads(block(PAGE, "json", '{"sub":"ann","exp"'))
    claim["exp"] = int(time.time()) + 60  # the page's is in the past by now
    grant = TokenVerifier(secret=SECRET).verify(jwt.encode(claim, SECRET, algorithm="HS256"))
    assert grant.subject == "ann"
    assert grant.permissions == Permissions(["metrics", "topic:orders.*", "group:billing-*"])
    assert not grant.publish
