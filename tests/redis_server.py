"""A throwaway ``redis-server`` for the Redis tests (Debian's package, persistence off).

``redis_binary()`` finds the server, installing Debian's ``redis-server`` package with
``apt-get`` when it is missing and the tests run as root. Without it the tests skip
with the reason, unless ``TAKHIN_WS_REQUIRE_REDIS`` is set (CI sets it): then they fail.

:class:`RedisServer` runs one server on a free loopback port; ``stop``/``start`` on the
same port play a Redis restart (everything is lost: no RDB, no AOF). :class:`Node` is
one ``python -m takhin_ws --redis-url ...`` process (a cluster node) on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REQUIRE_REDIS = "TAKHIN_WS_REQUIRE_REDIS"
#: The publish key of every :class:`Node`.
PUBLISH_KEY = "k"
#: Seconds a node may take to become ready (a hang guard, not a timing assertion).
NODE_GUARD = 20.0
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


class Node:
    """One ``python -m takhin_ws`` process on a free port."""

    def __init__(self, name: str, redis_url: str, log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/monitoring/ws"
        self.log_path = log_path
        args = ["--port", str(self.port), "--redis-url", redis_url]
        args += ["--publish-key", PUBLISH_KEY, "--interval", "0.5"]
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "takhin_ws", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + NODE_GUARD
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"{self.name} did not become ready:\n{self.log()}")

    def publish_topic(self, name: str) -> int:
        """``POST /api/events`` one ``topic_created`` (synchronously); its offset."""
        body = {"type": "topic_created", "data": {"name": name, "partitions": 1}}
        headers = {"Authorization": f"Bearer {PUBLISH_KEY}"}
        answer = httpx.post(self.url + "/api/events", json=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        offset: int = answer.json()["accepted"][0]["offset"]
        return offset

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
