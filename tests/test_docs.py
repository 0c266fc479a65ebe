"""The documentation's code runs and prints what it says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(name: str, lang: str) -> list[str]:
    text = (DOCS / name).read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _block(name: str, containing: str) -> str:
    """The one Python block of docs/*name* that contains *containing*."""
    (code,) = [b for b in _blocks(name, "python") if containing in b]
    return code


def _run(code: str, tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_embedding_example_prints_what_the_page_says(tmp_path: Path) -> None:
    code = _block("embedding.md", "trio.run(main)")
    (expected,) = _blocks("embedding.md", "text")
    assert _run(code, tmp_path) == expected


def test_sans_io_hub_example_runs(tmp_path: Path) -> None:
    code = _block("embedding.md", "QueueSubscriber()")
    out = _run(code, tmp_path)
    assert '"type":"topic_created"' in out
    assert '"offset":1' in out


def test_invalid_event_example_prints_what_the_page_says(tmp_path: Path) -> None:
    out = _run(_block("embedding.md", "except LocalProtocolError"), tmp_path).strip()
    assert f"prints `{out}`" in " ".join((DOCS / "embedding.md").read_text().split())


@pytest.mark.parametrize("name", ["embedding.md", "websocket-api.md", "operations.md"])
def test_docs_link_only_to_existing_files(name: str) -> None:
    path = DOCS / name
    if not path.exists():
        pytest.fail(f"docs/{name} is missing")
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (DOCS / target).exists(), f"{name} links to missing {target}"
