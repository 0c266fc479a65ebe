"""The Autobahn-style suite (``autobahn``): every case of sections 1-7, 9, 12 and 13
that applies to a server receiving client frames, over a real socket, each OK or
INFORMATIONAL and none NON-STRICT. One test per section; a failure lists the cases
that did not pass with what happened."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import autobahn_frames
import autobahn_limits
import autobahn_utf8_close
from autobahn import PASSING, Case, Result, play
from conftest import ServerFactory, wait_ready

pytestmark = pytest.mark.slow

#: What the suite's server allows beyond the defaults: Autobahn's biggest message
#: (9.1.6, 16 MiB), and no throttling or abuse limit (9.7 sends hundreds of messages,
#: and the UTF-8 cases' text is answered with errors).
SUITE_SETTINGS: dict[str, Any] = {
    "max_message_size": 16 * 1024 * 1024,
    "command_rate": 1e6,
    "command_burst": 100_000,
    "bad_message_limit": 100_000,
}

SECTIONS: dict[str, Callable[[], list[Case]]] = {
    "1": autobahn_frames.section_1,
    "2": autobahn_frames.section_2,
    "3": autobahn_frames.section_3,
    "4": autobahn_frames.section_4,
    "5": autobahn_frames.section_5,
    "6": autobahn_utf8_close.section_6,
    "7": autobahn_utf8_close.section_7,
    "9": autobahn_limits.section_9,
    "12": autobahn_limits.section_12,
    "13": autobahn_limits.section_13,
}


async def run_section(make_server: ServerFactory, cases: list[Case]) -> list[Result]:
    async with make_server(**SUITE_SETTINGS) as server:
        await wait_ready(server)
        return [await play(server.port, case) for case in cases]


@pytest.mark.parametrize("section", list(SECTIONS))
async def test_autobahn_section(make_server: ServerFactory, section: str) -> None:
    cases = SECTIONS[section]()
    assert cases, section
    results = await run_section(make_server, cases)
    bad = [f"{r.case} {r.result}: {r.detail}" for r in results if r.result not in PASSING]
    assert not bad, "\n".join(bad)
