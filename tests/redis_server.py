"""A throwaway ``redis-server`` for the Redis tests (Debian's package, persistence off).

``redis_binary()`` finds the server, installing Debian's ``redis-server`` package with
``apt-get`` when it is missing and the tests run as root. Without it the tests skip
with the reason, unless ``TAKHIN_WS_REQUIRE_REDIS`` is set (CI sets it): then they fail.

:class:`RedisServer` runs one server on a free loopback port; ``stop``/``start`` on the
same port play a Redis restart (everything is lost: no RDB, no AOF).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REQUIRE_REDIS = "TAKHIN_WS_REQUIRE_REDIS"
_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def _install() -> str:
    """Try ``apt-get install -y redis-server``; return what went wrong if it did."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root, so it cannot be installed here"
    if shutil.which("apt-get") is None:
        return "apt-get is not available to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:  # stale package lists: refresh once and retry
            subprocess.run(
                ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
            )
            done = subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install redis-server failed: {exc}"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return f"apt-get install redis-server failed: {' / '.join(tail)}"
    return ""


def redis_binary() -> str:
    """The path of ``redis-server``, installed if need be; skips (or fails) without it."""
    found = _find()
    if found:
        return found
    problem = _install()
    found = _find()
    if found:
        return found
    reason = f"redis-server not found ({problem or 'not on PATH after installing'})"
    if os.environ.get(REQUIRE_REDIS):
        pytest.fail(f"{reason}; {REQUIRE_REDIS} is set, so the Redis tests must run")
    pytest.skip(reason)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1:*port*, without persistence."""

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{self.port}.log"

    def start(self) -> None:
        assert self.proc is None, "already running"
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                pytest.fail(f"redis-server exited with {code}:\n{self.log()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server did not answer on port {self.port}:\n{self.log()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command over a raw socket (inline protocol); the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            parts = [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
            sock.sendall(f"*{len(args)}\r\n{''.join(parts)}".encode())
            return sock.recv(65536)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"
