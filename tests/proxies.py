"""The reverse proxies of docs/operations.md ("Serving the Takhin console's dashboard"),
run as written: nginx and Caddy from the system (Debian's ``nginx`` or ``nginx-light``
and ``caddy`` packages), each as the test's own process with its files in a temporary
directory, never the system service.

The docs' site block is taken from the page and changed only where a test must: the
public address becomes a local port, the upstream ports and the ``dist/`` directory the
test's own; the section's takhin-ws command gives the server's flags. Every replaced
text must be in the block, so a changed snippet fails loudly instead of being tested
half.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from docs_examples import block_after, commands

SECTION = "## Serving the Takhin console's dashboard"
#: What the snippets name: the public origin, takhin-ws, the console API, its build.
PUBLIC_HOST = "console.example.com"
TAKHIN_WS = "127.0.0.1:8081"
CONSOLE_API = "127.0.0.1:8080"
DIST = "/srv/takhin-console/dist"
READY = 20.0  # s: hang guard of the wait for the proxy
POLL = 0.1  # s between two looks at it


def doc_block(lang: str) -> str:
    """The ``lang`` block of the docs' section."""
    return block_after("docs/operations.md", lang, SECTION)


def documented_flags() -> list[str]:
    """The flags of the section's takhin-ws command, but ``--port 8081`` (the port the
    snippets proxy to, which a test replaces with its own)."""
    (command,) = commands(doc_block("sh"))
    program, port = "python -m takhin_ws ", f" --port {TAKHIN_WS.rsplit(':', 1)[1]}"
    assert command.startswith(program), command
    assert port in command, command
    return shlex.split(command.removeprefix(program).replace(port, ""))


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the docs' snippet no longer has {old!r}"
    return text.replace(old, new)


def proxy_binary(name: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        pytest.skip(f"{name} not found: install Debian's {name} package")
    return found


class Proxy:
    """One proxy process on ``127.0.0.1:port`` in front of takhin-ws and the console."""

    def __init__(self, name: str, port: int, takhin_ws: int, console_api: int, dist: Path) -> None:
        self.name = name
        self.port = port
        self.upstreams = {
            TAKHIN_WS: f"127.0.0.1:{takhin_ws}",
            CONSOLE_API: f"127.0.0.1:{console_api}",
        }
        self.dist = dist
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = dist.parent / f"{name}.log"

    def site(self, block: str) -> str:
        for old, new in self.upstreams.items():
            block = replace(block, old, new)
        return replace(block, DIST, str(self.dist))

    def command(self, workdir: Path) -> list[str]:
        if self.name == "nginx":
            return self._nginx(workdir)
        return self._caddy(workdir)

    def _nginx(self, workdir: Path) -> list[str]:
        site = self.site(doc_block("nginx"))
        site = replace(site, "listen 443 ssl;", f"listen 127.0.0.1:{self.port};")
        temp = "\n".join(
            f"    {kind}_temp_path {workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # run as root (CI), nginx's workers would be nobody, who cannot read the test's files
        user = "user root;\n" if os.geteuid() == 0 else ""
        config = workdir / "nginx.conf"
        config.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {workdir / 'nginx.pid'};\n"
            f"error_log {self.log_path} info;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    access_log off;\n{temp}\n"
            f"{site}}}\n"
        )
        return [
            proxy_binary("nginx"),
            "-p",
            str(workdir),
            "-c",
            str(config),
            "-e",
            str(self.log_path),
        ]

    def _caddy(self, workdir: Path) -> list[str]:
        site = self.site(doc_block("caddyfile"))
        site = replace(
            site, f"{PUBLIC_HOST} {{", f"http://{PUBLIC_HOST}:{self.port} {{\n\tbind 127.0.0.1"
        )
        config = workdir / "Caddyfile"
        config.write_text("{\n\tadmin off\n}\n\n" + site)
        return [proxy_binary("caddy"), "run", "--config", str(config), "--adapter", "caddyfile"]

    def start(self) -> None:
        workdir = self.dist.parent / f"{self.name}-run"
        workdir.mkdir()
        command = self.command(workdir)
        env = {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + READY
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url("/"), headers={"Host": self.host}, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(POLL)
        pytest.fail(f"{self.name} did not listen on port {self.port}:\n{self.log()}")

    @property
    def host(self) -> str:
        """The public ``host:port`` (the browser maps the name to 127.0.0.1)."""
        return f"{PUBLIC_HOST}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"
