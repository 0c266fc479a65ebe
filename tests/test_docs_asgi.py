"""The ASGI examples of docs/embedding.md, run as written: each console written to a
``console.py`` and served by the page's own ``hypercorn --worker-class trio`` command
(a real Hypercorn process on its Trio worker), then used by real clients.

- The Quart-Trio tutorial: its client script (httpx + the ``websockets`` client) prints
  what the page says, against a real Kafka broker (``--source kafka``); a handshake
  without the login cookie is refused 401 with the page's JSON body; a SIGTERM closes
  a connected client with 1001.
- The Starlette how-to: Chromium logs in and lands on the dashboard page (the same
  file as on the standalone server) under ``/live/``, connected through Hypercorn,
  showing a topic published with ``POST /live/api/events``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from playwright.sync_api import expect

from browser import SOON, chromium, open_page
from docs_examples import block_after, clean_env, commands, serving
from kafka_broker import KafkaBroker

pytestmark = pytest.mark.slow

PAGE = "docs/embedding.md"
TUTORIAL = "### Tutorial: add live Kafka metrics to a Quart-Trio console"
HOWTO = "### How to mount takhin-ws in a Starlette app"
DOC_PORT = "8000"
PUBLISH_KEY = "pk"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def section(marker: str) -> str:
    text = (Path(__file__).resolve().parent.parent / PAGE).read_text()
    return text[text.index(marker) :]


@contextmanager
def served(
    python_marker: str,
    sh_marker: str,
    tmp_path: Path,
    replacements: dict[str, str] | None = None,
    **env: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The page's ``console.py`` (the python block after *python_marker*) served by its
    ``hypercorn`` command (the sh block after *sh_marker*) on a free port; yields
    ``127.0.0.1:<port>`` and the process."""
    (tmp_path / "console.py").write_text(block_after(PAGE, "python", python_marker))
    (command,) = commands(block_after(PAGE, "sh", sh_marker))
    assert "hypercorn --worker-class trio" in command
    base = f"127.0.0.1:{free_port()}"
    command = command.replace(f"127.0.0.1:{DOC_PORT}", base)
    for old, new in (replacements or {}).items():
        command = command.replace(old, new)
    # exec: the process is Hypercorn's own, whose SIGTERM stops its workers gracefully
    command = re.sub(r"^((?:\w+=\S+\s+)*)", r"\1exec ", command)
    with serving(
        f"cd {tmp_path} && {command}",
        f"http://{base}/live/healthz",
        tmp_path / "hypercorn.log",
        clean_env(**env),
    ) as process:
        yield base, process


def test_the_quart_trio_tutorial_prints_what_the_page_says(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    install = block_after(PAGE, "sh", TUTORIAL)
    assert install.startswith("pip install")
    assert "quart-trio" in install
    run_marker = "Run it with Hypercorn's Trio worker"
    broker = {"127.0.0.1:9092": kafka.bootstrap}
    with served(TUTORIAL, run_marker, tmp_path, broker) as (base, process):
        wait_ready(base)
        client = block_after(PAGE, "python", "Then log in and listen")
        script = tmp_path / "client.py"
        script.write_text(client.replace(f'"127.0.0.1:{DOC_PORT}"', f'"{base}"'))
        out = subprocess.run(
            [os.fspath(Path(clean_env()["PATH"].split(os.pathsep)[0]) / "python"), script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        expected = block_after(PAGE, "text", "Then log in and listen")
        assert out.stdout == expected

        refused = asyncio.run(_handshake_without_cookie(base))
        assert refused == {
            "error": {
                "status": 401,
                "code": "unauthorized",
                "message": "log in to the console first",
            }
        }
        assert json.dumps(refused, separators=(",", ":")) in section(TUTORIAL)
        code = asyncio.run(_closed_by_sigterm(base, process))
    assert code == (1001, "server shutting down")


def wait_ready(base: str) -> None:
    """Until the first Kafka snapshot is out (``/live/readyz`` 200)."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"http://{base}/live/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    pytest.fail("the console's takhin-ws did not become ready")


async def _handshake_without_cookie(base: str) -> object:
    url = f"ws://{base}/live/api/monitoring/ws"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    response = info.value.response
    assert response.status_code == 401
    return json.loads(response.body or b"")


async def _closed_by_sigterm(base: str, process: subprocess.Popen[bytes]) -> tuple[int, str]:
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        await http.post("/login", data={"user": "ana"})
        cookie = f"session={http.cookies['session']}"
    url = f"ws://{base}/live/api/monitoring/ws?channels=topics"
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        process.send_signal(signal.SIGTERM)  # to Hypercorn itself, as an init system does
        try:
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed as exc:
            closed = exc.rcvd
        if closed is None:
            raise AssertionError("no Close frame")
        return closed.code, closed.reason


def test_the_starlette_how_to_serves_the_dashboard_under_live_in_chromium(
    tmp_path: Path,
) -> None:
    env = {"CONSOLE_SECRET": "test-secret", "TAKHIN_WS_PUBLISH_KEY": PUBLISH_KEY}
    with served(HOWTO, HOWTO, tmp_path, None, **env) as (base, _process), chromium() as browser:
        page, watch, frames = open_page(browser, f"http://{base}/login?user=ana")
        expect(page).to_have_url(re.compile(r"/live/\?ws=ws%3A%2F%2F"), timeout=SOON)
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=SOON)
        published = httpx.post(
            f"http://{base}/live/api/events",
            json={"type": "topic_created", "data": {"name": "orders-live", "partitions": 3}},
            headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
        )
        assert published.status_code == 202
        # the simulated source announces topics of its own: find ours among them
        entry = page.locator('#event-log li[data-type="topic_created"]', has_text="orders-live")
        expect(entry).to_have_count(1, timeout=SOON)
        watch.assert_clean()
        assert frames.urls[0].startswith(f"ws://{base}/live/api/monitoring/ws?")
        assert frames.received_types()[0] == "welcome"
        assert "metrics" in frames.received_types()
        # without the session cookie the same endpoint refuses
        refused = httpx.get(f"http://{base}/live/api/monitoring/ws")
        assert refused.status_code == 426
