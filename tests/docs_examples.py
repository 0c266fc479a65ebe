"""The examples of the documentation, found in the pages, and ways to run them.

An example is a fenced block with a language (```` ```python ````, ```` ```sh ````...)
in ``docs/*.md`` or ``README.md``; untagged blocks are diagrams, URLs and sample
output, not examples. ``tests/test_docs.py`` holds the list that says which test runs
each example, or why one is skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx
import pytest

from takhin_ws.config.options import ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Seconds a documented command may take to start serving (a hang guard).
START_GUARD = 30.0
#: Seconds a documented command may take to exit after SIGTERM.
STOP_GUARD = 20.0


@attrs.frozen
class Block:
    page: str  # "docs/operations.md", "README.md"
    lang: str
    code: str
    line: int  # of the opening fence


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def blocks(page: Path | None = None) -> list[Block]:
    """Every fenced block of *page* (default: every page), in order."""
    out = []
    for path in [page] if page else pages():
        text = path.read_text()
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
            line = text.count("\n", 0, match.start()) + 1
            name = str(path.relative_to(ROOT))
            out.append(Block(name, match.group(1), match.group(2), line))
    return out


def block(page: str, lang: str, containing: str) -> str:
    """The one *lang* block of *page* (``docs/x.md``) that contains *containing*."""
    (found,) = [b.code for b in blocks(ROOT / page) if b.lang == lang and containing in b.code]
    return found


def block_after(page: str, lang: str, marker: str) -> str:
    """The first *lang* block of *page* after the text *marker*."""
    text = (ROOT / page).read_text()
    rest = text[text.index(marker) :]
    match = re.search(rf"^```{lang}\n(.*?)^```", rest, flags=re.M | re.S)
    assert match, f"no {lang} block after {marker!r} in {page}"
    return match.group(1)


def commands(code: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", code)
    out = []
    for line in joined.splitlines():
        command = line.split(" #", 1)[0].strip() if not line.startswith("#") else ""
        if command:
            out.append(command)
    return out


#: The stamp of the virtualenv layer `make run` needs.
RUN_STAMP = ".venv/.installed-run"


def require_run_layer() -> None:
    """`make run` must not reinstall the virtualenv in a test (network, minutes)."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout: `make run` would create it first")
    fresh = subprocess.run(["make", "-q", RUN_STAMP], cwd=ROOT, capture_output=True, check=False)
    if fresh.returncode != 0:
        pytest.skip(f"{RUN_STAMP} is older than pyproject.toml: `make run` would reinstall first")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``TAKHIN_WS_*`` variable of the caller, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def wait_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    """Poll *url* until it answers (any status); fail if *process* exits first."""
    deadline = time.monotonic() + START_GUARD
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before answering:\n{log.read_text()}")
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"{url} did not answer within {START_GUARD} s:\n{log.read_text()}")


@contextmanager
def serving(
    command: str, url: str, log: Path, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the shell *command* (a server) until the block ends, once *url* answers;
    then SIGTERM its process group and wait for it (bounded)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: make and its child
        )
    try:
        wait_answering(url, process, log)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GUARD)
