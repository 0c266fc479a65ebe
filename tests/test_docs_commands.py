"""The shell commands of the docs and the README, run as written (with the port numbers,
Redis address and key replaced by this machine's): a command that starts a server runs
until it answers over HTTP (bounded), then gets SIGTERM and must exit cleanly.

Which block each test runs is listed in ``tests/test_docs.py`` (``EXAMPLES``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

import takhin_ws
from docs_examples import ROOT, block, clean_env, commands, require_run_layer, serving
from redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

#: The publish key the Scaling out example takes from ``$KEY``.
KEY = "docs-example-key"


def _run_make_run(command: str, tmp_path: Path) -> None:
    """*command* (a `make run` line of the docs, with 9000 as its port if any) serves
    on a free port until SIGTERM, and exits then."""
    require_run_layer()
    port = free_port()
    command = command.replace("9000", str(port))
    env = clean_env()
    if str(port) not in command:  # plain `make run`: the port through its variable
        env["TAKHIN_WS_PORT"] = str(port)
    log = tmp_path / "server.log"
    with serving(command, f"http://127.0.0.1:{port}/healthz", log, env) as process:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    text = log.read_text()
    assert f"takhin-ws serving http://127.0.0.1:{port}/" in text
    assert "shutting down" in text, text
    assert process.returncode is not None


def test_operations_running_it_make_run(tmp_path: Path) -> None:
    (command,) = [
        c for c in commands(block("docs/operations.md", "sh", "make run")) if c == "make run"
    ]
    _run_make_run(command, tmp_path)


def test_operations_running_it_make_run_on_another_port(tmp_path: Path) -> None:
    code = block("docs/operations.md", "sh", "make run")
    (command,) = [c for c in commands(code) if "--port 9000" in c]
    _run_make_run(command, tmp_path)


def test_operations_running_it_help_and_version() -> None:
    code = block("docs/operations.md", "sh", "make run")
    (help_command,) = [c for c in commands(code) if c.endswith("--help")]
    (version_command,) = [c for c in commands(code) if c.endswith("--version")]
    for command, expected in [(help_command, "--port"), (version_command, takhin_ws.__version__)]:
        done = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=clean_env(), capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        assert expected in done.stdout.decode(), command


def test_readme_the_first_command(tmp_path: Path) -> None:
    code = block("README.md", "sh", "make test")
    assert commands(code) == ["make run", "make test"]  # `make test` is this suite
    _run_make_run("make run", tmp_path)


@pytest.mark.parametrize("which", ["flag", "variable"])
def test_readme_another_port(which: str, tmp_path: Path) -> None:
    flag, variable = commands(block("README.md", "sh", "9000"))
    assert flag == 'make run ARGS="--port 9000"'
    assert variable == "TAKHIN_WS_PORT=9000 make run"
    _run_make_run(flag if which == "flag" else variable, tmp_path)


async def test_operations_scaling_out_two_nodes_on_one_redis(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Both documented nodes run on one real Redis; an event posted at the second
    reaches a client of the first. Each node's log says at start what it reads and
    shares, and which node collects the metrics (the other says who does)."""
    code = block("docs/operations.md", "sh", "--redis-url")
    nodes = commands(code)
    assert len(nodes) == 2
    ports = [free_port(), free_port()]
    env = clean_env(KEY=KEY)
    started = []
    for command, port, documented in zip(nodes, ports, ("8081", "8082"), strict=True):
        assert "redis://redis:6379/0" in command
        command = command.replace("redis://redis:6379/0", redis.url)
        command = command.replace(f"--port {documented}", f"--port {port}")
        started.append(command)
    logs = [tmp_path / "node1.log", tmp_path / "node2.log"]
    with (
        serving(started[0], f"http://127.0.0.1:{ports[0]}/healthz", logs[0], env),
        serving(started[1], f"http://127.0.0.1:{ports[1]}/healthz", logs[1], env),
    ):
        with trio.fail_after(30):
            async with httpx.AsyncClient() as http:
                for port in ports:
                    while (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:
                        await trio.sleep(0.05)
                url = f"ws://127.0.0.1:{ports[0]}/api/monitoring/ws?channels=topics"
                async with open_websocket_url(url) as ws:
                    await ws.get_message()  # welcome
                    event = {"type": "topic_created", "data": {"name": "docs", "partitions": 1}}
                    answer = await http.post(
                        f"http://127.0.0.1:{ports[1]}/api/events",
                        json=event,
                        headers={"Authorization": f"Bearer {KEY}"},
                    )
                    assert answer.status_code == 202, answer.text
                    received = orjson.loads(await ws.get_message())
    assert received["type"] == "topic_created"
    assert received["data"] == event["data"]
    texts = [log.read_text() for log in logs]
    where = redis.url.removeprefix("redis://")
    for text in texts:
        head = text.split("takhin-ws serving", 1)[0]
        assert "metrics source: synthetic, SIMULATED data" in head, text
        assert f"events: shared through Redis at {where} (cluster mode)" in head, text
        assert f"Redis at {where}: this node shares the cluster's event streams" in head, text
    # /readyz was 200 on both: each has asked for the lease once, and said what it found
    collects = [t for t in texts if "now collects the metrics (lease taken)" in t]
    (follower,) = [t for t in texts if re.search(r"another node \(\S+\) collects", t)]
    assert len(collects) == 1, texts
    # the Logs section shows the follower's start, line by line
    logged = [line.split(" ", 2)[2] for line in follower.splitlines() if line[:1].isdigit()]
    for documented in block(
        "docs/operations.md", "text", "shares the cluster's event"
    ).splitlines():
        pattern = _log_pattern(documented, where)
        assert any(pattern.fullmatch(line) for line in logged), (documented, follower)


def _log_pattern(documented: str, where: str) -> re.Pattern[str]:
    """A documented log line, with what differs per run (Redis address, node ids,
    epoch, port) as patterns."""
    pattern = re.escape(documented).replace(re.escape("redis:6379/0"), re.escape(where))
    pattern = re.sub(r"web\\-\d:\d+:[0-9a-f]+", r"[^\\s()]+", pattern)
    pattern = pattern.replace("5f2c9a7e1b3d4c60", "[0-9a-f]{16}")
    return re.compile(pattern.replace("8082", r"\d+"))


NGINX_CONF = """\
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
{location}
    }}
}}
"""


async def test_operations_nginx_proxies_the_websocket(tmp_path: Path) -> None:
    """The documented `location` block, in a minimal nginx.conf, in front of a server."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        pytest.skip("nginx is not installed")
    location = block("docs/operations.md", "nginx", "compares them")
    assert "http://127.0.0.1:8080" in location
    async with takhin_ws.open_server(takhin_ws.Settings(port=0, interval=3600.0)) as server:
        port = free_port()
        conf = NGINX_CONF.format(
            tmp=tmp_path,
            port=port,
            location=location.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"),
        )
        (tmp_path / "nginx.conf").write_text(conf)
        process = await trio.lowlevel.open_process(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(30):
                async with httpx.AsyncClient() as http:
                    while True:
                        try:
                            health = await http.get(f"http://127.0.0.1:{port}/healthz")
                            break
                        except httpx.TransportError:
                            assert process.poll() is None, (tmp_path / "error.log").read_text()
                            await trio.sleep(0.05)
                assert health.json() == {"status": "ok"}
                async with open_websocket_url(f"ws://127.0.0.1:{port}/api/monitoring/ws") as ws:
                    welcome = orjson.loads(await ws.get_message())
                    await ws.send_message('{"type":"ping"}')
                    while (reply := orjson.loads(await ws.get_message()))["type"] != "pong":
                        pass
        finally:
            process.terminate()
            with trio.fail_after(20):
                await process.wait()
    assert welcome["type"] == "welcome"
    assert reply == {"type": "pong", "timestamp": reply["timestamp"]}
    assert re.fullmatch(r"c\d+", welcome["data"]["clientId"])
