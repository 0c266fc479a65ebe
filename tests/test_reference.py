"""docs/reference.md is what tools/gen_reference.py makes of the code now, and the
generator covers everything it walks (messages, settings, public names, /metrics)."""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

import takhin_ws
import takhin_ws.lowlevel
import takhin_ws.protocol
from takhin_ws import Server, Settings
from takhin_ws.config.options import OPTIONS
from takhin_ws.protocol import Limits
from takhin_ws.wire.converter import camel
from takhin_ws.wire.messages import PAYLOAD_CLASSES

ROOT = Path(__file__).resolve().parent.parent
STALE = "docs/reference.md is stale: run `make docs` and commit the result"


def _load_generator() -> ModuleType:
    path = ROOT / "tools" / "gen_reference.py"
    spec = importlib.util.spec_from_file_location("gen_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def page() -> str:
    """The page as the generator makes it now (it starts a server of its own)."""
    text: str = gen.render()
    return text


def section(page: str, title: str) -> str:
    """The text of the ``## title`` section of *page*."""
    return page.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_committed_reference_is_what_the_generator_makes_now(page: str) -> None:
    committed = (ROOT / "docs" / "reference.md").read_text()
    if committed != page:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            page.splitlines(keepends=True),
            "docs/reference.md (committed)",
            "docs/reference.md (generated now)",
            n=1,
        )
        pytest.fail(f"{STALE}\n{''.join(diff)[:4000]}", pytrace=False)


def test_the_page_is_the_same_in_every_checkout(page: str) -> None:
    """Nothing of this machine's paths: KafkaSource's default collector command is
    shown as sys.executable, not this checkout's interpreter."""
    assert sys.executable not in page
    assert "command=(sys.executable, " in page


def test_generating_twice_gives_the_same_page(page: str) -> None:
    assert gen.render() == page


def test_check_mode_says_run_make_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "OUTPUT", tmp_path / "reference.md")
    (tmp_path / "reference.md").write_text("# an old page\n")
    assert gen.main(["--check"]) == 1
    assert "reference.md is stale: run `make docs`" in capsys.readouterr().err
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


def test_every_message_attribute_is_listed_with_its_wire_name(page: str) -> None:
    messages = section(page, "Messages")
    classes: list[type[Any]] = [takhin_ws.protocol.Envelope, *PAYLOAD_CLASSES.values()]
    classes += gen.nested_classes(PAYLOAD_CLASSES.values())
    for cls in classes:
        heading = f"`{cls.TYPE}`: `{cls.__name__}`" if hasattr(cls, "TYPE") else f"`{cls.__name__}`"
        assert heading in messages, f"{cls.__name__} has no section"
        for field in attrs.fields(cls):
            if cls is takhin_ws.protocol.Envelope and field.name == "payload":
                continue
            assert f"| `{field.name}` | `{camel(field.name)}` |" in messages, (cls, field.name)


def test_every_setting_is_listed_with_its_flag_variable_and_default(page: str) -> None:
    settings = section(page, "Settings: `Settings`")
    options = {option.setting: option for option in OPTIONS}
    defaults = Settings()
    for field in attrs.fields(Settings):
        (row,) = [line for line in settings.splitlines() if line.startswith(f"| `{field.name}` |")]
        option = options.get(field.name)
        if option is None:  # set only by a program that embeds takhin-ws
            assert row.startswith(f"| `{field.name}` |  |  |")
        else:
            assert f"`{option.flag}`" in row
            assert f"`{option.variable}`" in row
        assert f"`{getattr(defaults, field.name)!r}`" in row


@pytest.mark.parametrize("tier", [takhin_ws, takhin_ws.protocol, takhin_ws.lowlevel])
def test_every_public_name_is_in_the_index(page: str, tier: ModuleType) -> None:
    index = section(page, "Every public name")
    part = index.split(f"\n### `{tier.__name__}`\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| \[?`(\w+)`", part, flags=re.M)
    assert rows == list(tier.__all__)


def test_every_name_of_takhin_ws_sources_has_a_section(page: str) -> None:
    import takhin_ws.sources

    index = section(page, "Every public name")
    for name in takhin_ws.sources.__all__:  # its own section, or a top-level name
        assert f"\n### `{name}`\n" in page or f"| `{name}` |" in index, name
    # and what a public signature takes is public (Hub.add_client's variant)
    assert "Variant" in takhin_ws.__all__
    assert "variant=Variant()" in page


async def test_every_family_a_server_serves_is_listed(server: Server) -> None:
    """/metrics of a running server (a fixture of the tests, not the generator's)."""
    with trio.fail_after(10):
        async with open_websocket_url(server.ws_url) as ws:
            await ws.get_message()
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.get("/no-such-path")
                exposed = (await http.get("/metrics")).text
    names = re.findall(r"^# TYPE (\S+) (\S+)$", exposed, flags=re.M)
    assert names
    page = (ROOT / "docs" / "reference.md").read_text()
    families = section(page, "Prometheus metrics (`GET /metrics`)")
    for name, kind in names:
        assert f"| `{name}` | {kind} |" in families, name
    labelled = re.findall(r"^(\w+)\{(\w+)=", exposed, flags=re.M)
    assert labelled
    for name, label in labelled:
        assert re.search(rf"^\| `{name}` \| \w+ \| `{label}` \|", families, flags=re.M), name


def test_families_of_optional_statistics_say_when_they_are_absent(page: str) -> None:
    families = section(page, "Prometheus metrics (`GET /metrics`)")
    (bus,) = [line for line in families.splitlines() if "`takhin_ws_bus_healthy`" in line]
    assert bus.rstrip(" |").endswith("without a shared event bus")
    (clients,) = [line for line in families.splitlines() if "`takhin_ws_clients`" in line]
    assert clients.endswith("|  |")


@attrs.frozen(kw_only=True)
class NewMessage:
    """A message added later: the generator needs no edit for it."""

    TYPE: ClassVar[str] = "new_thing"
    #: How many there are.
    item_count: int = 0
    parts: tuple[Limits, ...] = ()


def test_a_new_message_class_is_rendered_without_editing_the_generator() -> None:
    text = "\n".join(gen.message_section(NewMessage, {}))
    assert text.startswith("### `new_thing`: `NewMessage`")
    assert "not described in websocket-api.md" in text
    assert "A message added later" in text
    assert "| `item_count` | `itemCount` | `int` | `0` | How many there are. |" in text
    assert "| `parts` | `parts` | `tuple[Limits, ...]` | `()` |  |" in text
    assert gen.nested_classes([NewMessage]) == [Limits]


def test_message_sections_link_to_the_wire_doc_headings() -> None:
    wire = "## Messages\n### Server to client\n#### `a_b`, `c`\n### Client to server\n#### `c`\n"
    sections = gen.wire_sections(wire)
    assert sections == {
        ("server to client", "a_b"): "a_b-c",
        ("server to client", "c"): "a_b-c",
        ("client to server", "c"): "c",
    }
